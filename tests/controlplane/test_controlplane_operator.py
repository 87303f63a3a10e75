"""The real KubeRay operator (the pinned ray-operator binary, out-of-cluster) against the local API server:
each overlay yields a RayCluster and head/worker Pods shaped as the tier promises. No kubelet or scheduler
runs, so the pods stay Pending and `wait` must say "not scheduled yet", never healthy."""

from __future__ import annotations

import io
import time
import uuid

import pytest

from cpkit import run_cli
from kuberay_llm.harness.apply import apply_objects
from kuberay_llm.render import overlay_names, render_overlay

pytestmark = pytest.mark.timeout(240)  # a hung watch fails its test, not the whole run

POD_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def operator_namespaces(controlplane):
    """One namespace per overlay (tiers share RayService names), the operator watching only those."""
    suffix = uuid.uuid4().hex[:6]
    names = {overlay: f"op-{overlay}-{suffix}" for overlay in overlay_names()}
    for name in names.values():
        controlplane.kube().request("POST", "/api/v1/namespaces", body={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    controlplane.start_operator(namespace=",".join(names.values()))
    yield names
    controlplane.stop_operator()


def watch_until(kube, path: str, query: list, done, timeout: float = POD_TIMEOUT_S):
    """List, then watch from the list's resourceVersion, until `done(items)` returns a truthy value."""
    deadline = time.monotonic() + timeout
    listing = kube.request("GET", path, query=query)
    items = {i["metadata"]["name"]: i for i in listing["items"]}
    version = listing["metadata"]["resourceVersion"]
    while not (result := done(list(items.values()))):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} {query}: condition not met in {timeout}s; have {sorted(items)}")
        for event in kube.watch(path, [*query, ("timeoutSeconds", str(max(1, int(deadline - time.monotonic()))))],
                                version):
            obj = event["object"]
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "DELETED":
                items.pop(obj["metadata"]["name"], None)
            else:
                items[obj["metadata"]["name"]] = obj
            if done(list(items.values())):
                break
    return result


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env") or []}


@pytest.mark.parametrize("overlay", overlay_names())
def test_operator_builds_the_cluster_the_tier_promises(overlay, controlplane, operator_namespaces):
    operator_namespace = operator_namespaces[overlay]
    kube = controlplane.kube(operator_namespace)
    rendered = render_overlay(overlay)
    rayservice = next(o for o in rendered.objects if o["kind"] == "RayService")
    name = rayservice["metadata"]["name"]
    apply_objects(kube, rendered.objects, source=rendered.source, out=io.StringIO())

    spec = rayservice["spec"]["rayClusterConfig"]
    groups = spec["workerGroupSpecs"]
    expected = 1 + sum(g.get("replicas", g.get("minReplicas", 0)) for g in groups)
    clusters = watch_until(kube, f"/apis/ray.io/v1/namespaces/{operator_namespace}/rayclusters",
                           [("labelSelector", f"ray.io/originated-from-cr-name={name}")], lambda items: items)
    cluster = clusters[0]["metadata"]["name"]
    assert cluster.startswith(f"{name}-") and len(cluster) == len(name) + 6
    pods = watch_until(kube, f"/api/v1/namespaces/{operator_namespace}/pods",
                       [("labelSelector", f"ray.io/cluster={cluster}")],
                       lambda items: items if len(items) >= expected else None)

    head = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head"]
    assert len(head) == 1
    head_container = head[0]["spec"]["containers"][0]
    start_command = " ".join(head_container.get("command", []) + head_container.get("args", []))
    assert "ray start --head" in start_command and "--num-gpus=0" in start_command, start_command
    assert "nvidia.com/gpu" not in (head_container.get("resources") or {}).get("limits", {})
    assert head_container["image"] == spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]

    for group in groups:
        template = group["template"]["spec"]
        want = template["containers"][0]
        workers = [p for p in pods if p["metadata"]["labels"].get("ray.io/group") == group["groupName"]]
        assert len(workers) == group.get("replicas", group.get("minReplicas")), group["groupName"]
        for pod in workers:
            container = pod["spec"]["containers"][0]
            assert container["image"] == want["image"]
            assert container["resources"]["limits"] == want["resources"]["limits"]
            assert (pod["spec"].get("nodeSelector") or {}) == (template.get("nodeSelector") or {})
            tolerations = pod["spec"].get("tolerations") or []
            for toleration in template.get("tolerations") or []:
                assert toleration in tolerations
            if "nvidia.com/gpu" in want["resources"]["limits"]:
                assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations)
            hf = env_of(want).get("HF_TOKEN")
            if hf:
                assert env_of(container)["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
            assert pod["status"].get("phase") == "Pending"
    if overlay == "gke-a3-deepseek":  # the tier's promises, spelled out
        worker = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker")
        assert worker["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert worker["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"
        assert env_of(worker["spec"]["containers"][0])["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
        assert env_of(head_container)["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"

    # No scheduler or kubelet: the harness must see pods that are not scheduled yet, and time out (exit 4).
    result = run_cli(["wait", name, "-n", operator_namespace, "--timeout", "4s"], controlplane.kubeconfig)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "not scheduled yet" in result.stderr
    assert "is healthy" not in result.stdout
