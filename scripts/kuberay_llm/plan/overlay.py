"""Read what the planner needs from a rendered overlay: the RayService, its llm_configs and its GPU type."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from kuberay_llm.errors import UserError
from kuberay_llm.plan.catalog import Gpu, find_gpu, gpus

# Node labels that name the GPU model: NVIDIA GPU feature discovery and GKE.
GPU_NODE_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator")


@dataclass
class GpuShape:
    gpu: Gpu | None      # None: the overlay does not say which GPU
    how: str             # where the GPU type came from, or why it is unknown
    cpu_only: bool = False
    gpus_per_worker: int = 0
    workers: int = 0


def rayservices(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o.get("kind") == "RayService"]


def llm_configs(rayservice: dict, source: str) -> list[dict]:
    """applications[].args.llm_configs[] of spec.serveConfigV2 (a YAML string)."""
    name = (rayservice.get("metadata") or {}).get("name", "?")
    text = (rayservice.get("spec") or {}).get("serveConfigV2")
    if not isinstance(text, str):
        raise UserError(f"{source}: RayService/{name} has no spec.serveConfigV2")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: RayService/{name} serveConfigV2 is not valid YAML: {exc}") from None
    found = []
    for app in (config or {}).get("applications") or [] if isinstance(config, dict) else []:
        found.extend(((app or {}).get("args") or {}).get("llm_configs") or [])
    return [c for c in found if isinstance(c, dict)]


def _gpu_from_node_selector(selector: dict) -> tuple[Gpu | None, str]:
    for label in GPU_NODE_LABELS:
        value = selector.get(label)
        if value:
            try:
                return find_gpu(value), f"nodeSelector {label}: {value}"
            except UserError:
                return None, f"nodeSelector {label}: {value} is not a GPU the planner knows ({', '.join(gpus())})"
    return None, ""


def gpu_shape(rayservice: dict, llm_config: dict) -> GpuShape:
    """The GPU of the worker group: accelerator_type first (it is what Ray schedules on), then node labels."""
    cluster = (rayservice.get("spec") or {}).get("rayClusterConfig") or {}
    groups = cluster.get("workerGroupSpecs") or []
    per_worker, workers, selector = 0, 0, {}
    for group in groups:
        pod = ((group.get("template") or {}).get("spec")) or {}
        for container in pod.get("containers") or []:
            limits = ((container.get("resources") or {}).get("limits")) or {}
            per_worker = max(per_worker, int(str(limits.get("nvidia.com/gpu", 0) or 0)))
        workers = max(workers, int(group.get("maxReplicas", group.get("replicas", 1)) or 0))
        selector = selector or (pod.get("nodeSelector") or {})
    accelerator = (llm_config.get("accelerator_config") or {})
    if per_worker == 0 or str(accelerator.get("kind", "")).lower() == "cpu":
        return GpuShape(None, "CPU-only (no nvidia.com/gpu in the worker group)", cpu_only=True)
    accelerator_type = llm_config.get("accelerator_type")
    if accelerator_type:
        try:
            return GpuShape(find_gpu(str(accelerator_type)), f"accelerator_type: {accelerator_type}",
                            gpus_per_worker=per_worker, workers=workers)
        except UserError:
            pass  # a type the catalog lacks: the node labels may still name the GPU
    gpu, how = _gpu_from_node_selector(selector)
    if gpu is None and not how:
        how = "no accelerator_type and no GPU nodeSelector: the GPU type is unknown (pass --gpu)"
    return GpuShape(gpu, how, gpus_per_worker=per_worker, workers=workers)
