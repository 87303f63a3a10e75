"""The local cluster on a machine with GPUs, for real except the GPUs: `kuberay-llm cluster up` registers the GPU
node from `nvidia-smi`, the real kube-scheduler places pods on it by `nvidia.com/gpu` requests and the GPU taint,
and the local kubelet gives each container the devices the device plugin would (and none to a container that
requests none), frees them when the pod goes, and a pod that asks for more than is free stays Pending with the
scheduler's own reason.

`nvidia-smi` is a stand-in script (this machine has no GPU) printing two H100s in the real one's format; the
containers print their environment instead of running CUDA. `make e2e-gpu` runs the same path on a real GPU."""

from __future__ import annotations

import stat
import sys
import time

import pytest

from kuberay_llm.cluster import gpus, network
from kuberay_llm.cluster.controlplane import Cluster
from kuberay_llm.errors import UserError
from kuberay_llm.harness.kube import ApiError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SMI = ("0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 9.0",
       "1, GPU-bbbbbbbb-1111-1111-1111-111111111111, NVIDIA H100 80GB HBM3, 81559, 9.0")
TOLERATE = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    smi = tmp_path_factory.mktemp("smi") / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f'echo "{line}"\n' for line in SMI))
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    mp = pytest.MonkeyPatch()
    mp.setenv("KUBERAY_LLM_NVIDIA_SMI", str(smi))
    plane = Cluster(tmp_path_factory.mktemp("gpu-cluster"))
    try:
        plane.up(out=sys.stderr)
    except UserError as err:
        pytest.fail(f"local cluster did not start: {err}", pytrace=False)
    finally:
        mp.undo()
    yield plane
    prefix = plane.state["netns_prefix"]
    plane.down(out=sys.stderr)
    assert network.list_netns(prefix) == [], "pod network namespaces left behind"


def pod(name: str, gpu_count: int, node: str, sleep: int = 0) -> dict:
    container = {"name": "main", "image": "busybox", "command": [
        "sh", "-c", f"env | grep -E '^(NVIDIA_VISIBLE_DEVICES|CUDA_VISIBLE_DEVICES)=' | sort; sleep {sleep}"]}
    if gpu_count:
        container["resources"] = {"limits": {gpus.RESOURCE: str(gpu_count)}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                     "tolerations": TOLERATE, "containers": [container]}}


def until(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s")


def logs(kube, name: str) -> list[str]:
    def read():
        try:
            return kube.text(f"/api/v1/namespaces/default/pods/{name}/log", []).splitlines() or None
        except ApiError:  # "no logs found" until the kubelet has started the container
            return None
    return until(read)


def test_gpu_node_is_registered_from_nvidia_smi(cluster):
    node = cluster.kube().request("GET", f"/api/v1/nodes/{gpus.GPU_NODE}")
    assert node["status"]["allocatable"][gpus.RESOURCE] == "2"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert node["metadata"]["labels"]["nvidia.com/gpu.count"] == "2"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_devices_per_container_and_none_without_a_request(cluster):
    kube = cluster.kube()
    for body in (pod("one-gpu", 1, gpus.GPU_NODE, 60), pod("no-gpu", 0, "local")):
        kube.request("POST", "/api/v1/namespaces/default/pods", body=body)
    assert logs(kube, "no-gpu") == ["CUDA_VISIBLE_DEVICES=", "NVIDIA_VISIBLE_DEVICES=void"]
    assert logs(kube, "one-gpu") == ["CUDA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=GPU-aaaaaaaa-0000-0000-0000-000000000000"]

    # Two more GPUs than are free: the real scheduler keeps it Pending and says why.
    kube.request("POST", "/api/v1/namespaces/default/pods", body=pod("two-gpu", 2, gpus.GPU_NODE))

    def unschedulable():
        p = kube.request("GET", "/api/v1/namespaces/default/pods/two-gpu")
        return next((c for c in p["status"].get("conditions") or []
                     if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"), None)
    assert "Insufficient nvidia.com/gpu" in until(unschedulable)["message"]

    # The first pod ends: its GPU is released and the waiting pod gets both.
    kube.request("DELETE", "/api/v1/namespaces/default/pods/one-gpu", body={"gracePeriodSeconds": 0})
    assert logs(kube, "two-gpu") == [
        "CUDA_VISIBLE_DEVICES=0,1",
        "NVIDIA_VISIBLE_DEVICES=GPU-aaaaaaaa-0000-0000-0000-000000000000,GPU-bbbbbbbb-1111-1111-1111-111111111111"]
