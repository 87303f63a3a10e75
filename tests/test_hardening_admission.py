"""Pod Security admission of the pods KubeRay creates, on a real kube-apiserver (its built-in PodSecurity admission
plugin) with the real pinned KubeRay operator: the operator builds the head and worker pods from the RayService
(adding its autoscaler sidecar, the wait-gcs-ready init container, the token-auth and GCS FT variables), and the
API server admits or refuses them by the namespace's `pod-security.kubernetes.io/enforce` label.

- small with pod-security (and ray-auth, gcs-fault-tolerance, model-cache) passes `restricted`;
- small without it (every tier but GKE A3 has it by default) is refused by `restricted` with the API
  server's own list of violations;
- gke-a3-deepseek with pod-security: the privileged GPUDirect daemon and its hostPath volumes are refused by
  `baseline`; only `privileged` admits the workers (the head passes `restricted`).
No kubelet runs: admission is the point, the pods stay Pending."""

from __future__ import annotations

import io
import time
import uuid

import pytest

from hardening_helpers import add_components, remove_component, set_model_source

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(300)]

WAIT_S = 90


@pytest.fixture(scope="module")
def plane(hardening_plane_starting):
    try:
        plane = hardening_plane_starting.result()
    except RuntimeError as err:
        pytest.fail(f"local control plane did not start: {err}", pytrace=False)
    plane.start_operator()
    yield plane
    plane.stop_operator()


def namespace(plane, level: str) -> str:
    from apiserver_helpers import create_namespace

    name = f"pss-{level}-{uuid.uuid4().hex[:6]}"
    create_namespace(plane.kube(), name, {"pod-security.kubernetes.io/enforce": level,
                                          "pod-security.kubernetes.io/enforce-version": "latest"})
    return name


def deploy(plane, ns: str, overlay) -> str:
    """Apply a rendered overlay (as `kuberay-llm apply` does); the RayService's name."""
    from kuberay_llm.harness.apply import apply_objects
    from kuberay_llm.render import render_overlay

    rendered = render_overlay(str(overlay))
    objects = [o for o in rendered.objects if o["kind"] not in ("PodMonitor", "PrometheusRule")]
    apply_objects(plane.kube(ns), objects, source=rendered.source, out=io.StringIO())
    return next(o for o in objects if o["kind"] == "RayService")["metadata"]["name"]


def wait_for(plane, ns: str, what: str, check):
    """List pods and events of the namespace until check(pods, events) answers (watching the events)."""
    kube = plane.kube(ns)
    deadline = time.monotonic() + WAIT_S
    while True:
        pods = kube.request("GET", f"/api/v1/namespaces/{ns}/pods")["items"]
        events = kube.request("GET", f"/api/v1/namespaces/{ns}/events")
        result = check(pods, events["items"])
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{ns}: {what} not seen in {WAIT_S}s; pods {[p['metadata']['name'] for p in pods]}, "
                                 f"events {[e['reason'] + ': ' + e['message'][:200] for e in events['items']]}\n"
                                 f"{plane.log_tail('ray-operator')}")
        for _ in kube.watch(f"/api/v1/namespaces/{ns}/events",
                            [("timeoutSeconds", str(max(1, min(10, int(deadline - time.monotonic())))))],
                            events["metadata"]["resourceVersion"]):
            break  # something happened: look again


def pods_by_type(pods) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in pods:
        out.setdefault(p["metadata"]["labels"].get("ray.io/node-type", "?"), []).append(p)
    return out


def refusals(events, reason: str) -> list[str]:
    return [e["message"] for e in events if e["reason"] == reason]


def test_hardened_small_passes_restricted(plane, overlay_copy):
    small = overlay_copy("small")
    add_components(small, "pod-security", "ray-auth", "gcs-fault-tolerance", "model-cache")
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    ns = namespace(plane, "restricted")
    deploy(plane, ns, small)
    pods = wait_for(plane, ns, "head and worker pods",
                    lambda pods, events: (lambda t: t if t.get("head") and t.get("worker") else None)(pods_by_type(pods)))
    head, worker = pods["head"][0]["spec"], pods["worker"][0]["spec"]
    # what KubeRay added is there and hardened: its autoscaler sidecar, its wait-gcs-ready init container
    assert [c["name"] for c in head["containers"]] == ["ray-head", "autoscaler"]
    assert [c["name"] for c in worker["initContainers"]] == ["wait-for-model-cache", "wait-gcs-ready"]
    env = {e["name"] for e in worker["containers"][0]["env"]}
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_gcs_rpc_server_reconnect_timeout_s"} <= env
    # the fill Job's pod passes too (no controller-manager runs here to create it: create its template as a Pod)
    from apiserver_helpers import dry_run_create
    from kuberay_llm.render import render_overlay

    job = next(o for o in render_overlay(str(small)).objects if o["kind"] == "Job")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fill"}, "spec": job["spec"]["template"]["spec"]}
    assert dry_run_create(plane.kube(ns), ns, pod) is None


def test_small_without_pod_security_is_refused_by_restricted_with_the_violations(plane, overlay_copy):
    small = overlay_copy("small")
    remove_component(small, "pod-security")
    ns = namespace(plane, "restricted")
    deploy(plane, ns, small)
    messages = wait_for(plane, ns, "FailedToCreateHeadPod", lambda pods, events: refusals(events, "FailedToCreateHeadPod"))
    assert 'violates PodSecurity "restricted:latest"' in messages[0]
    for violation in ('allowPrivilegeEscalation != false (containers "ray-head", "autoscaler" must set '
                      'securityContext.allowPrivilegeEscalation=false)',
                      'runAsNonRoot != true', 'seccompProfile'):
        assert violation in messages[0], messages[0]


def _a3_with_pod_security(overlay_copy):
    """gke-a3-deepseek as it is: it builds on large, which includes pod-security."""
    return overlay_copy("gke-a3-deepseek")


def test_a3_workers_are_refused_by_baseline_for_the_privileged_gpudirect_daemon(plane, overlay_copy):
    ns = namespace(plane, "baseline")
    deploy(plane, ns, _a3_with_pod_security(overlay_copy))
    messages = wait_for(plane, ns, "FailedToCreateWorkerPod",
                        lambda pods, events: refusals(events, "FailedToCreateWorkerPod"))
    assert messages[0].endswith('is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volumes '
                                '"nvidia-libraries", "sys", "proc-sys"), privileged (container "tcpx-daemon" must not '
                                'set securityContext.privileged=true)'), messages[0]


def test_a3_workers_are_admitted_by_privileged_and_the_head_passes_restricted_checks(plane, overlay_copy):
    ns = namespace(plane, "privileged")
    deploy(plane, ns, _a3_with_pod_security(overlay_copy))
    pods = wait_for(plane, ns, "two worker pods",
                    lambda pods, events: (lambda t: t if len(t.get("worker", [])) == 2 else None)(pods_by_type(pods)))
    # the head pod as created would pass restricted on its own
    from apiserver_helpers import dry_run_create

    strict = namespace(plane, "restricted")
    head = pods["head"][0]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "head"}, "spec": head["spec"]}
    pod["spec"].pop("nodeName", None)
    assert dry_run_create(plane.kube(strict), strict, pod) is None
