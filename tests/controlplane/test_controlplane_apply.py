"""Server-side apply of every overlay against a real kube-apiserver with the pinned KubeRay CRDs."""

from __future__ import annotations

import io
import time
import uuid

import pytest
import yaml

from cpkit import run_cli
from kuberay_llm.harness.apply import apply_objects
from kuberay_llm.render import overlay_names, render_overlay

pytestmark = pytest.mark.timeout(240)  # a hung watch fails its test, not the whole run

OVERLAYS = overlay_names()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_under_strict_validation_and_reapply_is_a_no_op(overlay, kube):
    rendered = render_overlay(overlay)
    first = apply_objects(kube, rendered.objects, source=rendered.source, out=io.StringIO())
    assert first and set(first.values()) == {"created"}, first
    second = apply_objects(kube, rendered.objects, source=rendered.source, out=io.StringIO())
    assert set(second.values()) == {"unchanged"}, second
    for label in first:
        kind, name = label.split("/")
        if kind == "RayService":
            live = kube.request("GET", f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices/{name}")
            managers = {m["manager"] for m in live["metadata"]["managedFields"]}
            assert managers == {"kuberay-llm"}


def test_cli_apply_reports_created_then_unchanged_and_dry_run_changes_nothing(controlplane, namespace):
    dry = run_cli(["apply", "small", "-n", namespace, "--dry-run"], controlplane.kubeconfig)
    assert dry.returncode == 0, dry.stderr
    assert "rayservice/llama-8b" in dry.stdout and "created (server dry run)" in dry.stdout
    assert controlplane.kube(namespace).get(
        f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b") is None
    first = run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig)
    assert first.returncode == 0, first.stderr
    assert f"rayservice/llama-8b -n {namespace} created" in first.stdout
    again = run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig)
    assert f"rayservice/llama-8b -n {namespace} unchanged" in again.stdout
    changed = run_cli(["apply", "medium", "-n", namespace, "--dry-run"], controlplane.kubeconfig)
    assert changed.returncode == 0, changed.stderr


def test_a_field_typo_is_rejected_by_the_api_server(controlplane, namespace, overlay_copy):
    overlay = overlay_copy("small")
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    (overlay / "typo.yaml").write_text(yaml.safe_dump([{
        "op": "add", "path": "/spec/rayClusterConfig/headGroupSpec/template/spec/containers/0/resourcez",
        "value": {"limits": {"cpu": "4"}}}]))
    kustomization["patches"].append({"path": "typo.yaml", "target": {"kind": "RayService"}})
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))

    result = run_cli(["apply", str(overlay), "-n", namespace], controlplane.kubeconfig)

    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "RayService/llama-8b rejected by the API server" in message
    assert "resourcez" in message and "field not declared in schema" in message
    assert controlplane.kube(namespace).get(
        f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b") is None


def test_unknown_overlay_is_a_usage_error(controlplane):
    result = run_cli(["apply", "no-such-overlay"], controlplane.kubeconfig)
    assert result.returncode == 2  # usage
    assert "no-such-overlay: not an overlay" in result.stderr and "Traceback" not in result.stderr


def test_a_changed_overlay_reports_configured(controlplane, namespace, overlay_copy):
    assert run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig).returncode == 0
    overlay = overlay_copy("small")
    patch = overlay / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace("value: 4", "value: 3"))
    dry = run_cli(["apply", str(overlay), "-n", namespace, "--dry-run"], controlplane.kubeconfig)
    assert f"rayservice/llama-8b -n {namespace} configured (server dry run)" in dry.stdout, dry.stdout + dry.stderr
    changed = run_cli(["apply", str(overlay), "-n", namespace], controlplane.kubeconfig)
    assert f"rayservice/llama-8b -n {namespace} configured" in changed.stdout, changed.stdout + changed.stderr
    live = controlplane.kube(namespace).request("GET", f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b")
    assert live["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 3


# --- re-applying after the real KubeRay operator took over fields --------------------------------------------

@pytest.fixture(scope="module")
def operator_watched(controlplane):
    """Two fresh namespaces and the pinned KubeRay operator watching them."""
    names = [f"ssa-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        controlplane.kube().request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    controlplane.start_operator(namespace=",".join(names))
    yield names
    controlplane.stop_operator()


def rayservice_when(kube, name: str, done, timeout: float = 60) -> dict:
    """The RayService once `done(it)` holds: list, then watch from the list's resourceVersion."""
    path = f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices"
    query = [("fieldSelector", f"metadata.name={name}")]
    deadline = time.monotonic() + timeout
    listing = kube.request("GET", path, query=query)
    live, version = (listing["items"] or [None])[0], listing["metadata"]["resourceVersion"]
    while not (live and done(live)):
        left = int(deadline - time.monotonic())
        if left <= 0:
            raise AssertionError(f"RayService {kube.namespace}/{name}: condition not met in {timeout}s: {live}")
        for event in kube.watch(path, [*query, ("timeoutSeconds", str(left))], version):
            version = event["object"]["metadata"]["resourceVersion"]
            if event["type"] in ("ADDED", "MODIFIED"):
                live = event["object"]
                if done(live):
                    break
    return live


def owners_of_worker_groups(live: dict) -> set[str]:
    return {m["manager"] for m in live["metadata"].get("managedFields") or []
            if "f:workerGroupSpecs" in ((m.get("fieldsV1") or {}).get("f:spec", {}).get("f:rayClusterConfig") or {})}


def operator_took_over(live: dict) -> bool:
    """The operator's finalizer Update has moved the worker groups (an atomic list) to its field manager."""
    return bool(live["metadata"].get("finalizers")) and owners_of_worker_groups(live) == {"kuberay-operator"}


def test_reapply_takes_back_what_the_operators_finalizer_update_took(controlplane, operator_watched):
    namespace = operator_watched[0]
    kube = controlplane.kube(namespace)
    assert run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig).returncode == 0
    rayservice_when(kube, "llama-8b", operator_took_over)

    again = run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig)

    assert again.returncode == 0, again.stdout + again.stderr
    assert (f"rayservice/llama-8b -n {namespace} configured (took back .spec.rayClusterConfig.workerGroupSpecs "
            "from kuberay-operator)") in again.stdout, again.stdout
    live = kube.get(f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b")
    assert owners_of_worker_groups(live) == {"kuberay-llm"}
    assert live["metadata"]["finalizers"] == ["ray.io/rayservice-finalizer"]  # the operator's, left alone
    third = run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig)
    assert f"rayservice/llama-8b -n {namespace} unchanged" in third.stdout, third.stdout + third.stderr


def test_a_conflict_with_anyone_but_the_operator_still_fails(controlplane, operator_watched):
    namespace = operator_watched[1]
    kube = controlplane.kube(namespace)
    assert run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig).returncode == 0
    rayservice_when(kube, "llama-8b", operator_took_over)
    # a person's edit of a field the overlay sets, as `kubectl edit` records it
    kube.request("PATCH", f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b",
                 query=[("fieldManager", "kubectl-edit")], content_type="application/merge-patch+json",
                 body={"metadata": {"annotations": {"ray.io/initializing-timeout": "5m"}}})

    refused = run_cli(["apply", "small", "-n", namespace], controlplane.kubeconfig)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert "RayService/llama-8b rejected by the API server: Apply failed with 2 conflicts: " in message
    assert ('.metadata.annotations.ray.io/initializing-timeout: conflict with "kubectl-edit"' in message
            and '.spec.rayClusterConfig.workerGroupSpecs: conflict with "kuberay-operator"' in message), message
    assert message.endswith("(rerun with --force-conflicts to take them over)"), message
    forced = run_cli(["apply", "small", "-n", namespace, "--force-conflicts"], controlplane.kubeconfig)
    assert f"rayservice/llama-8b -n {namespace} configured" in forced.stdout, forced.stdout + forced.stderr
    live = kube.get(f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b")
    assert live["metadata"]["annotations"]["ray.io/initializing-timeout"] != "5m"
