"""The GPU node of the local cluster, without root: what `nvidia-smi` reports becomes the node's capacity and
GPU feature discovery's labels, and the device plugin's bookkeeping gives each container its own GPUs.

`nvidia-smi` here is a stand-in script (this machine has no GPU): it prints what the real one prints for
`--query-gpu=index,uuid,name,memory.total,compute_cap --format=csv,noheader,nounits` on an H100 node (the format
seen on the GPU machine). The real nvidia-smi runs in `make e2e-gpu`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kuberay_llm.cluster import gpus
from kuberay_llm.cluster.controlplane import ZONE_LABELS, node_objects
from kuberay_llm.errors import UserError

H100 = ["0, GPU-ba6b6139-4c17-684e-e101-f6257d88b738, NVIDIA H100 80GB HBM3, 81559, 9.0",
        "1, GPU-0f7d3c1e-1111-2222-3333-444444444444, NVIDIA H100 80GB HBM3, 81559, 9.0"]


def stand_in(tmp_path: Path, lines: list[str], code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    body = "\n".join(f'echo "{line}"' for line in lines)
    script.write_text(f"#!/bin/sh\n{body}\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_discover_reads_every_gpu(tmp_path):
    found = gpus.discover(stand_in(tmp_path, H100))
    assert [(g.index, g.uuid, g.memory_mib, g.compute_cap) for g in found] == [
        (0, "GPU-ba6b6139-4c17-684e-e101-f6257d88b738", 81559, "9.0"),
        (1, "GPU-0f7d3c1e-1111-2222-3333-444444444444", 81559, "9.0")]


def test_no_nvidia_smi_means_no_gpus(monkeypatch):
    monkeypatch.delenv("KUBERAY_LLM_NVIDIA_SMI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpus.discover() == []


def test_a_failing_nvidia_smi_is_an_error_with_the_way_out(tmp_path):
    with pytest.raises(UserError) as err:
        gpus.discover(stand_in(tmp_path, ["NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"], 9))
    assert str(err.value).endswith("exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                                   "driver; fix the driver or set KUBERAY_LLM_GPUS=none to start the local cluster "
                                   "without its GPU node")


def test_labels_are_gpu_feature_discoverys():
    found = [gpus.Gpu(0, "GPU-a", "NVIDIA H100 80GB HBM3", 81559, "9.0"), gpus.Gpu(1, "GPU-b", "NVIDIA H100 80GB HBM3", 81559, "9.0")]
    assert gpus.node_labels(found) == {
        "nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "nvidia.com/gpu.count": "2", "nvidia.com/gpu.memory": "81559", "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.family": "hopper", "nvidia.com/gpu.compute.major": "9", "nvidia.com/gpu.compute.minor": "0"}
    assert gpus.node_labels([gpus.Gpu(0, "u", "Tesla T4", 15360, "7.5")])["nvidia.com/gpu.family"] == "turing"


def test_the_product_label_is_the_one_the_planner_catalog_knows():
    """The labels the tiers' nodeSelectors use come out of real nvidia-smi names (H100 seen, H200 as NVML names it)."""
    import yaml
    catalog = yaml.safe_load((Path(gpus.__file__).parents[1] / "data/gpus.yaml").read_text())["gpus"]
    for name, entry in (("NVIDIA H100 80GB HBM3", "H100-80GB"), ("NVIDIA H200", "H200"), ("NVIDIA L4", "L4")):
        assert gpus.product_label(name) in catalog[entry]["labels"]


def test_cluster_up_adds_the_gpu_node_only_where_there_are_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBERAY_LLM_NVIDIA_SMI", stand_in(tmp_path, H100))
    node = next(n for n in node_objects() if n["name"] == gpus.GPU_NODE)
    assert node["runs"] == "ray" and node["capacity"][gpus.RESOURCE] == "2"
    assert node["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert node["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert node["labels"]["topology.kubernetes.io/zone"] == ZONE_LABELS["topology.kubernetes.io/zone"]
    monkeypatch.setenv("KUBERAY_LLM_GPUS", "none")
    assert gpus.GPU_NODE not in [n["name"] for n in node_objects()]
    monkeypatch.delenv("KUBERAY_LLM_GPUS")
    monkeypatch.setenv("KUBERAY_LLM_NVIDIA_SMI", stand_in(tmp_path, []))
    assert gpus.GPU_NODE not in [n["name"] for n in node_objects()]


def test_each_container_gets_its_own_gpus_until_its_pod_ends():
    allocator = gpus.Allocator([{"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559,
                                 "compute_cap": "9.0"} for i in range(2)])
    first = allocator.allocate("ns/worker-a/ray-worker", 1)
    assert [g.uuid for g in first] == ["GPU-0"]
    assert allocator.allocate("ns/worker-a/ray-worker", 1) == first  # a restarted container keeps its device
    with pytest.raises(gpus.AllocationError) as err:
        allocator.allocate("ns/worker-b/ray-worker", 2)
    assert str(err.value) == ("ns/worker-b/ray-worker requests 2 nvidia.com/gpu but only 1 of 2 are free "
                              "(held: 0 (ns/worker-a/ray-worker))")
    assert [g.uuid for g in allocator.release("ns/worker-a/")] == ["GPU-0"]
    assert [g.uuid for g in allocator.allocate("ns/worker-b/ray-worker", 2)] == ["GPU-0", "GPU-1"]


def test_device_env_names_the_devices_or_none():
    devices = [gpus.Gpu(1, "GPU-b", "NVIDIA H100 80GB HBM3", 81559, "9.0")]
    assert gpus.container_env(devices) == {"NVIDIA_VISIBLE_DEVICES": "GPU-b", "CUDA_VISIBLE_DEVICES": "1",
                                           "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert gpus.container_env([]) == {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}


def test_requested_reads_limits_as_extended_resources_must_be_set():
    assert gpus.requested({"resources": {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}}) == 2
    assert gpus.requested({"resources": {"requests": {"cpu": "1"}}}) == 0
    assert gpus.requested({}) == 0


def test_the_gpu_overlay_changes_only_the_model_its_weights_the_accelerator_and_the_node(tmp_path):
    """make e2e-gpu's overlay: small as written, but its model a local directory with random weights."""
    from kuberay_llm.cluster.tiny_overlay import gpu_overlay
    from kuberay_llm.local.serve_config import llm_configs_of, serve_config_of
    from kuberay_llm.render import render_overlay

    model = tmp_path / "m" / "llama8b"
    model.mkdir(parents=True)
    selector = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "kubernetes.io/hostname": gpus.GPU_NODE}
    out = gpu_overlay("small", model, "H100", tmp_path / "ov", node_selector=selector)
    before, after = render_overlay("small"), render_overlay(str(out))
    _, old = serve_config_of(before)
    _, new = serve_config_of(after)
    old_llm, new_llm = llm_configs_of(old["applications"][0])[0], llm_configs_of(new["applications"][0])[0]
    assert new_llm["model_loading_config"]["model_source"] == str(model)
    assert new_llm["engine_kwargs"] == {**old_llm["engine_kwargs"], "load_format": "dummy"}
    assert new_llm["accelerator_type"] == "H100"
    rs_old = next(o for o in before.objects if o["kind"] == "RayService")["spec"]["rayClusterConfig"]
    rs_new = next(o for o in after.objects if o["kind"] == "RayService")["spec"]["rayClusterConfig"]
    worker_old, worker_new = rs_old["workerGroupSpecs"][0]["template"]["spec"], rs_new["workerGroupSpecs"][0]["template"]["spec"]
    assert worker_new["nodeSelector"] == {**(worker_old.get("nodeSelector") or {}), **selector}
    assert worker_new["containers"][0]["resources"] == worker_old["containers"][0]["resources"]
    assert {"name": "tiny-model", "mountPath": str(model.parent), "readOnly": True} in worker_new["containers"][0]["volumeMounts"]
