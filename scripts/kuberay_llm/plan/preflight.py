"""Capacity findings for the offline validator.

Call it once per llm_config of a rendered RayService:

    from kuberay_llm.plan.preflight import check_capacity, Finding
    for finding in check_capacity("overlays/large", rayservice, rayservice_llm_configs[0]):
        print(finding)          # "overlays/large: RayService/deepseek-r1: serveConfigV2 llm_configs[0]…"
        finding.severity        # "error" | "warning"

`llm_config` is one element of serveConfigV2's applications[].args.llm_configs (parsed YAML); pass
`index` to name it in the field path. It returns [] when the planner cannot judge (unknown model, unknown
GPU, CPU-only worker): the validator decides on those itself. Errors: the weights do not fit in
gpu_memory_utilization of a GPU. Warnings: the KV cache holds fewer max_model_len requests than
max_num_seqs, or max_num_seqs / max_model_len leave KV memory unused.
"""

from __future__ import annotations

from kuberay_llm.errors import UserError
from kuberay_llm.preflight.findings import Finding
from kuberay_llm.plan.accounting import DEFAULT_GPU_MEMORY_UTILIZATION, GiB, Plan, PlanInput, plan
from kuberay_llm.plan.catalog import Gpu, find_model
from kuberay_llm.plan.overlay import gpu_shape

# A KV cache that holds this many times more requests than max_num_seqs admits is memory left unused.
UNUSED_CAPACITY_FACTOR = 2.0




def plan_input(llm_config: dict, gpu: Gpu) -> PlanInput:
    """The planner's inputs from one llm_config, with vLLM's defaults for what it leaves out."""
    source = ((llm_config.get("model_loading_config") or {}).get("model_source")
              or (llm_config.get("model_loading_config") or {}).get("model_id") or "")
    kwargs = llm_config.get("engine_kwargs") or {}
    model = find_model(str(source))
    return PlanInput(
        model=model, gpu=gpu,
        tp=int(kwargs.get("tensor_parallel_size", 1)), pp=int(kwargs.get("pipeline_parallel_size", 1)),
        max_model_len=int(kwargs.get("max_model_len") or model.max_position_embeddings),
        gpu_memory_utilization=float(kwargs.get("gpu_memory_utilization", DEFAULT_GPU_MEMORY_UTILIZATION)),
        max_num_seqs=kwargs.get("max_num_seqs"), max_num_batched_tokens=kwargs.get("max_num_batched_tokens"),
        kv_cache_dtype=str(kwargs.get("kv_cache_dtype", "auto")))


def check_capacity(source: str, rayservice: dict, llm_config: dict, index: int = 0) -> list[Finding]:
    name = f"RayService/{(rayservice.get('metadata') or {}).get('name', '?')}"
    field = f"serveConfigV2 llm_configs[{index}]"
    shape = gpu_shape(rayservice, llm_config)
    if shape.gpu is None:
        return []
    try:
        result = plan(plan_input(llm_config, shape.gpu))
    except UserError as err:
        if "unknown model" in str(err):
            return []
        return [Finding("error", source, name, f"{field}.engine_kwargs.tensor_parallel_size", str(err),
                        "choose a tensor/pipeline parallel size the model's heads and layers allow")]
    return _findings(result, source, name, field)


def _findings(result: Plan, source: str, name: str, field: str) -> list[Finding]:
    inp, kwargs = result.inputs, f"{field}.engine_kwargs"
    out = []
    if not result.fits:
        stage = result.binding_stage
        out.append(Finding(
            "error", source, name, f"{kwargs}.tensor_parallel_size",
            f"{inp.model.name} does not fit on {inp.gpu.name}: {stage.weights_bytes / GiB:.1f} GiB of weights + "
            f"{stage.overhead_bytes / GiB:.1f} GiB overhead per GPU leave no KV cache within "
            f"gpu_memory_utilization {inp.gpu_memory_utilization} x {inp.gpu.total_gib} GiB",
            "raise tensor_parallel_size or pipeline_parallel_size, or use a GPU with more memory"))
        return out
    capacity = result.max_concurrency
    if capacity < result.max_num_seqs:
        out.append(Finding(
            "warning", source, name, f"{kwargs}.max_num_seqs",
            f"the KV cache holds {capacity:.1f} requests of max_model_len {inp.max_model_len}, fewer than "
            f"max_num_seqs {result.max_num_seqs}: long requests will queue or be preempted",
            f"lower max_num_seqs to {max(1, int(capacity))} or max_model_len, or add GPUs"))
    elif capacity > UNUSED_CAPACITY_FACTOR * result.max_num_seqs:
        out.append(Finding(
            "warning", source, name, f"{kwargs}.max_num_seqs",
            f"max_num_seqs {result.max_num_seqs} admits a fraction of the {capacity:.0f} max_model_len "
            "requests the KV cache holds: memory is left unused",
            f"raise max_num_seqs towards {int(capacity)} or raise max_model_len"))
    return out
