"""Read what the planner needs from a rendered overlay: the RayService, its llm_configs and its GPU type.

The serve config is read through the one serve-config model (kuberay_llm.serveconfig): a config the planner
cannot read, or an engine setting of the wrong type or range, is a UserError naming the overlay, the object and
the field, never a traceback or a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberay_llm import serveconfig
from kuberay_llm.errors import UserError
from kuberay_llm.kubenames import quantity
from kuberay_llm.plan.accounting import DEFAULT_GPU_MEMORY_UTILIZATION, PlanInput
from kuberay_llm.plan.catalog import Gpu, find_gpu, find_model, gpus
from kuberay_llm.serveconfig import LLMEntry

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
    return [o for o in objects if isinstance(o, dict) and o.get("kind") == "RayService"]


def _name(rayservice: dict) -> str:
    meta = rayservice.get("metadata")
    return f"RayService/{(meta.get('name') if isinstance(meta, dict) else None) or '?'}"


def llm_entries(rayservice: dict, source: str) -> list[LLMEntry]:
    """Every inline llm_config of spec.serveConfigV2, type-checked where the planner reads it."""
    try:
        config = serveconfig.of_rayservice(rayservice)
    except serveconfig.ServeConfigError as err:
        raise UserError(f"{source}: {_name(rayservice)}: {err.field}: {err}") from None
    problems = config.problems
    if problems:
        where, why = problems[0]
        raise UserError(f"{source}: {_name(rayservice)}: {where}: {why} (`kuberay-llm validate {source}` lists "
                        "every problem)")
    return config.llm_entries


def llm_configs(rayservice: dict, source: str) -> list[dict]:
    """applications[].args.llm_configs[] of spec.serveConfigV2, as written."""
    return [e.config for e in llm_entries(rayservice, source)]


def _entry(llm_config: dict | LLMEntry) -> LLMEntry:
    if isinstance(llm_config, LLMEntry):
        return llm_config
    return LLMEntry("", 0, 0, "serveConfigV2 llm_configs[0]", llm_config if isinstance(llm_config, dict) else {})


def plan_input(llm_config: dict | LLMEntry, gpu: Gpu) -> PlanInput:
    """The planner's inputs from one llm_config, with vLLM's defaults for what it leaves out."""
    entry = _entry(llm_config)
    model = find_model(str(entry.model_source or entry.model_id or ""))
    return PlanInput(
        model=model, gpu=gpu, tp=entry.tp, pp=entry.pp,
        max_model_len=entry.max_model_len or model.max_position_embeddings,
        gpu_memory_utilization=float(entry.setting("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION)),
        max_num_seqs=entry.setting("max_num_seqs"), max_num_batched_tokens=entry.setting("max_num_batched_tokens"),
        kv_cache_dtype=str(entry.setting("kv_cache_dtype", "auto")),
        data_parallel_size=entry.setting("data_parallel_size", 1),
        expert_parallel=bool(entry.setting("enable_expert_parallel", False)))


def _whole(value) -> int:
    amount = quantity(value)
    return int(amount) if amount is not None and amount == int(amount) and amount > 0 else 0


def _gpu_from_node_selector(selector: dict) -> tuple[Gpu | None, str]:
    for label in GPU_NODE_LABELS:
        value = selector.get(label)
        if isinstance(value, str) and value:
            try:
                return find_gpu(value), f"nodeSelector {label}: {value}"
            except UserError:
                return None, f"nodeSelector {label}: {value} is not a GPU the planner knows ({', '.join(gpus())})"
    return None, ""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def gpu_shape(rayservice: dict, llm_config: dict | LLMEntry) -> GpuShape:
    """The GPU of the worker group: accelerator_type first (it is what Ray schedules on), then node labels."""
    entry = _entry(llm_config)
    cluster = _dict(_dict(rayservice.get("spec")).get("rayClusterConfig"))
    groups = [g for g in cluster.get("workerGroupSpecs") or [] if isinstance(g, dict)]
    per_worker, workers, selector = 0, 0, {}
    for group in groups:
        pod = _dict(_dict(group.get("template")).get("spec"))
        for container in pod.get("containers") or []:
            limits = _dict(_dict(_dict(container).get("resources")).get("limits"))
            per_worker = max(per_worker, _whole(limits.get("nvidia.com/gpu", 0)))
        count = group.get("maxReplicas", group.get("replicas", 1))
        workers = max(workers, count if isinstance(count, int) and not isinstance(count, bool) else 0)
        selector = selector or _dict(pod.get("nodeSelector"))
    if per_worker == 0 or entry.on_cpu:
        return GpuShape(None, "CPU-only (no nvidia.com/gpu in the worker group)", cpu_only=True)
    if entry.accelerator_type:
        try:
            return GpuShape(find_gpu(entry.accelerator_type), f"accelerator_type: {entry.accelerator_type}",
                            gpus_per_worker=per_worker, workers=workers)
        except UserError:
            pass  # a type the catalog lacks: the node labels may still name the GPU
    gpu, how = _gpu_from_node_selector(selector)
    if gpu is None and not how:
        how = "no accelerator_type and no GPU nodeSelector: the GPU type is unknown (pass --gpu)"
    return GpuShape(gpu, how, gpus_per_worker=per_worker, workers=workers)
