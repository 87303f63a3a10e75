"""Check 4d: the weights fit and the KV cache holds max_num_seqs requests, from the capacity planner.

It returns nothing when the planner cannot judge (unknown model, unknown GPU, CPU-only worker) and leaves the
parallel-size rules to model_facts (one finding per mistake). Errors: the weights do not fit in
gpu_memory_utilization of a GPU. Warnings: the KV cache holds fewer max_model_len requests than max_num_seqs,
or max_num_seqs / max_model_len leave KV memory unused.
"""

from __future__ import annotations

from kuberay_llm.errors import UserError
from kuberay_llm.plan.accounting import GiB, Plan, plan
from kuberay_llm.plan.overlay import gpu_shape, plan_input
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import LLMEntry, RayServiceFacts

# A KV cache that holds this many times more requests than max_num_seqs admits is memory left unused.
UNUSED_CAPACITY_FACTOR = 2.0


def check_capacity(source: str, rayservice: dict, entry: LLMEntry | dict, index: int = 0) -> list[Finding]:
    """Capacity findings of one llm_config (an LLMEntry, or a mapping named llm_configs[index])."""
    if not isinstance(entry, LLMEntry):
        entry = LLMEntry("", 0, index, f"serveConfigV2 llm_configs[{index}]", entry)
    name = f"RayService/{(rayservice.get('metadata') or {}).get('name', '?')}"
    shape = gpu_shape(rayservice, entry)
    if shape.gpu is None:
        return []
    try:
        result = plan(plan_input(entry, shape.gpu))
    except UserError:  # unknown model (model_facts warns) or parallel sizes (model_facts reports)
        return []
    return _findings(result, source, name, entry.path)


def _findings(result: Plan, source: str, name: str, field: str) -> list[Finding]:
    inp, kwargs = result.inputs, f"{field}.engine_kwargs"
    if not result.fits:
        stage = result.binding_stage
        return [Finding(
            ERROR, source, name, f"{kwargs}.tensor_parallel_size",
            f"{inp.model.name} does not fit on {inp.gpu.name}: {stage.weights_bytes / GiB:.1f} GiB of weights + "
            f"{stage.overhead_bytes / GiB:.1f} GiB overhead per GPU leave no KV cache within "
            f"gpu_memory_utilization {inp.gpu_memory_utilization} x {inp.gpu.total_gib} GiB",
            "raise tensor_parallel_size or pipeline_parallel_size, or use a GPU with more memory")]
    capacity = result.max_concurrency
    if capacity < 1:  # vLLM: "The model's max seq len ... is larger than the maximum number of tokens ... in KV cache"
        return [Finding(
            ERROR, source, name, f"{kwargs}.max_model_len",
            f"one request of max_model_len {inp.max_model_len} needs more KV cache than the {result.kv_cache_tokens:,} "
            f"tokens {inp.model.name} leaves on {inp.gpu.name} (gpu_memory_utilization {inp.gpu_memory_utilization}): "
            "vLLM refuses to start", "lower max_model_len, raise gpu_memory_utilization, or add GPUs")]
    if capacity < result.max_num_seqs:
        return [Finding(
            WARNING, source, name, f"{kwargs}.max_num_seqs",
            f"the KV cache holds {capacity:.1f} requests of max_model_len {inp.max_model_len}, fewer than "
            f"max_num_seqs {result.max_num_seqs}: long requests will queue or be preempted",
            f"lower max_num_seqs to {max(1, int(capacity))} or max_model_len, or add GPUs")]
    if capacity > UNUSED_CAPACITY_FACTOR * result.max_num_seqs:
        return [Finding(
            WARNING, source, name, f"{kwargs}.max_num_seqs",
            f"max_num_seqs {result.max_num_seqs} admits a fraction of the {capacity:.0f} max_model_len "
            "requests the KV cache holds: memory is left unused",
            f"raise max_num_seqs towards {int(capacity)} or raise max_model_len")]
    return []


def rule_capacity(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Weights fit and the KV cache holds max_num_seqs requests (kuberay_llm.plan, vLLM's accounting)."""
    return [f for e in rs.llm_entries if not e.on_cpu for f in check_capacity(source, rs.obj, e)]


RULES = [rule_capacity]
