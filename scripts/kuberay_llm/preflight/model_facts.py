"""Check 4c: the model's own facts against its engine arguments, from the planner's catalog.

vLLM checks these when the engine starts, after the image pull and the weight download:
- tensor_parallel_size divides the attention heads, and divides or is a multiple of the KV heads;
  pipeline_parallel_size at most the layers (vllm/config/model.py verify_with_parallel_config; the planner's
  `validate_parallelism` is the one copy of that rule);
- max_model_len within the model's context (max_position_embeddings), unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
  (vllm/config/model.py _get_and_verify_max_len: "User-specified max_model_len ... is greater than the derived
  max_model_len");
- dtype bfloat16 needs compute capability 8.0 (vllm/platforms/cuda.py check_if_supports_dtype);
- a quantization method's minimum compute capability (QuantizationConfig.get_min_capability of the pinned
  vLLM; checked only where vLLM is installed, since the minimum differs by method and kernel).
A model the catalog does not know gets one warning that these checks were skipped.
"""

from __future__ import annotations

from kuberay_llm.errors import UserError
from kuberay_llm.plan.accounting import validate_parallelism
from kuberay_llm.plan.catalog import Model, find_model
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import LLMEntry, RayServiceFacts

ALLOW_LONG_ENV = "VLLM_ALLOW_LONG_MAX_MODEL_LEN"
BF16_MIN_CAPABILITY = 80
# CUDA compute capability (x10) by the accelerator type Ray detects (ray.util.accelerators names), from NVIDIA's
# "CUDA GPUs - Compute Capability" table.
COMPUTE_CAPABILITY = {
    "K80": 37, "P4": 61, "P100": 60, "V100": 70, "T4": 75, "A10G": 86, "A10": 86, "A40": 86, "L4": 89, "L40S": 89,
    "A100": 80, "A100-40G": 80, "A100-80G": 80, "H100": 90, "H200": 90, "B200": 100, "GB200": 100,
}


def catalog_model(entry: LLMEntry) -> Model | None:
    for name in (entry.model_source, entry.model_id):
        if name:
            try:
                return find_model(name)
            except UserError:
                continue
    return None


def gpu_type(rs: RayServiceFacts, entry: LLMEntry) -> str | None:
    """The accelerator type the replicas run on: accelerator_type, else what the GPU workers' selectors pick."""
    from kuberay_llm.preflight.rules import ray_gpu_name

    if entry.accelerator_type:
        return entry.accelerator_type
    names = {ray_gpu_name(w.node_selector) for w in rs.gpu_workers} - {None}
    return names.pop() if len(names) == 1 else None


def _allows_long_context(rs: RayServiceFacts, entry: LLMEntry) -> bool:
    if str(entry.env_vars.get(ALLOW_LONG_ENV, "")).lower() in ("1", "true"):
        return True
    for group in rs.groups:
        for c in group.containers:
            for env in c.get("env") or []:
                if isinstance(env, dict) and env.get("name") == ALLOW_LONG_ENV and str(env.get("value")) in ("1", "true"):
                    return True
    return False


def _min_capability(method: str) -> int | None:
    """vLLM's minimum compute capability for a quantization method, where vLLM is installed."""
    try:
        from vllm.model_executor.layers.quantization import get_quantization_config
    except ImportError:
        return None
    try:
        return int(get_quantization_config(method).get_min_capability())
    except Exception:  # noqa: BLE001 - an unknown method is vllm_check's finding, not this rule's
        return None


def rule_model_facts(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for e in rs.llm_entries:
        if e.on_cpu:
            continue
        model = catalog_model(e)
        kwargs = f"{e.path}.engine_kwargs"
        if model is None:
            out.append(Finding(WARNING, source, obj, f"{e.path}.model_loading_config.model_source="
                               f"{e.model_source or e.model_id}",
                               "is not in the planner's catalog: tensor parallel against heads, max_model_len against "
                               "the context, dtype and quantization against the GPU were not checked",
                               "add the model to scripts/kuberay_llm/data/models.yaml from its config.json"))
            continue
        try:
            validate_parallelism(model, e.tp, e.pp)
        except UserError as err:
            out.append(Finding(ERROR, source, obj, f"{kwargs}.tensor_parallel_size={e.tp}", f"vLLM refuses it: {err}",
                               "choose a tensor/pipeline parallel size the model's heads and layers allow"))
        length = e.max_model_len
        if length and length > model.max_position_embeddings and not _allows_long_context(rs, e):
            out.append(Finding(ERROR, source, obj, f"{kwargs}.max_model_len={length}",
                               f"is greater than {model.name}'s context of {model.max_position_embeddings:,} tokens "
                               "(max_position_embeddings): vLLM refuses to start",
                               f"lower max_model_len to {model.max_position_embeddings} or less (or set "
                               f"{ALLOW_LONG_ENV}=1 if the model's rope scaling really allows it)"))
        gpu = gpu_type(rs, e)
        capability = COMPUTE_CAPABILITY.get(gpu or "")
        if capability is None:
            continue
        dtype = str(e.setting("dtype", "auto")).lower()
        if dtype in ("bfloat16", "bf16") and capability < BF16_MIN_CAPABILITY:
            out.append(Finding(ERROR, source, obj, f"{kwargs}.dtype={dtype}",
                               f"bfloat16 needs compute capability 8.0, and {gpu} has {capability / 10:.1f}: vLLM "
                               "refuses to start", "use dtype: float16 (or auto) on this GPU"))
        method = e.setting("quantization")
        if method:
            needed = _min_capability(str(method))
            if needed is not None and capability < needed:
                out.append(Finding(ERROR, source, obj, f"{kwargs}.quantization={method}",
                                   f"needs compute capability {needed / 10:.1f} in vLLM, and {gpu} has "
                                   f"{capability / 10:.1f}", "use a quantization this GPU supports, or a newer GPU"))
    return out


RULES = [rule_model_facts]
