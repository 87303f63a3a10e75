"""vLLM's KV-cache accounting, per GPU and per pipeline stage.

vLLM (v1 engine, gpu_worker.determine_available_memory + kv_cache_utils) sizes the KV cache of each GPU as

    kv_bytes = gpu_memory_utilization x total - weights - non-KV overhead

splits it into pages of `block_size` tokens for every layer the GPU holds, keeps the smallest block count
over all workers, and logs "Maximum concurrency for N tokens per request" = blocks / ceil(N / block_size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kuberay_llm.errors import UserError
from kuberay_llm.plan import overhead
from kuberay_llm.plan.catalog import Gpu, Model
from kuberay_llm.plan.weights import pp_partition, stage_weight_bytes

GiB = 1024**3

# vLLM's default --gpu-memory-utilization: 0.92 since the 0.2x releases Ray 2.60 pins (0.9 before).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92

KV_DTYPE_BYTES = {"auto": None, "bfloat16": 2, "float16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_ds_mla": 1}


def default_batch_limits(gpu: Gpu) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) vLLM picks for an OpenAI server when the config sets neither
    (vllm/engine/arg_utils.py: >= 70 GiB GPUs other than A100 get 1024 / 8192, the rest 256 / 2048)."""
    if gpu.total_gib >= 70 and not gpu.name.startswith("A100"):
        return 1024, 8192
    return 256, 2048


def block_size(model: Model, gpu: Gpu) -> int:
    """KV block size vLLM's attention backend picks: 16, except MLA on Hopper (FlashMLA: 64) and Blackwell
    (CUTLASS MLA: 128)."""
    if model.mla and gpu.architecture == "hopper":
        return 64
    if model.mla and gpu.architecture == "blackwell":
        return 128
    return 16


@dataclass
class PlanInput:
    model: Model
    gpu: Gpu
    tp: int = 1
    pp: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_num_seqs: int | None = None            # None: vLLM's default for the GPU
    max_num_batched_tokens: int | None = None  # None: vLLM's default for the GPU
    kv_cache_dtype: str = "auto"
    vllm_version: str = overhead.DEPLOYED_VLLM_VERSION  # its model runner decides the CUDA graph term
    # Data parallel attention (build_dp_openai_app): one plan is one DP rank; the experts shard over TP x DP.
    data_parallel_size: int = 1
    expert_parallel: bool = False


@dataclass
class Stage:
    layers: int
    weights_bytes: float
    overhead_bytes: float
    kv_bytes: float
    num_blocks: int
    kv_cache_tokens: int
    max_concurrency: float


@dataclass
class Plan:
    inputs: PlanInput
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    kv_bytes_per_token_per_layer: int
    stages: list[Stage] = field(default_factory=list)

    @property
    def binding_stage(self) -> Stage:
        return min(self.stages, key=lambda s: s.num_blocks)

    @property
    def max_concurrency(self) -> float:
        """Requests of max_model_len tokens the KV cache holds at once (the minimum over stages)."""
        return self.binding_stage.max_concurrency

    @property
    def kv_cache_tokens(self) -> int:
        return self.binding_stage.kv_cache_tokens

    @property
    def fits(self) -> bool:
        return all(s.num_blocks > 0 for s in self.stages)

    @property
    def binding_limit(self) -> str:
        """What caps concurrent requests at max_model_len: the KV memory or the scheduler's max_num_seqs."""
        return "max_num_seqs" if self.max_num_seqs <= self.max_concurrency else "kv_memory"

    @property
    def effective_concurrency(self) -> float:
        return min(self.max_concurrency, float(self.max_num_seqs))


def validate_parallelism(model: Model, tp: int, pp: int) -> None:
    """The checks vLLM makes at startup, with the message a user can act on."""
    if tp < 1 or pp < 1:
        raise UserError(f"tensor_parallel_size ({tp}) and pipeline_parallel_size ({pp}) must be at least 1")
    if model.attention_heads % tp:
        raise UserError(f"{model.name}: tensor_parallel_size {tp} does not divide its {model.attention_heads} "
                        f"attention heads (use one of {_divisors(model.attention_heads)})")
    if not model.mla and model.kv_heads % tp and tp % model.kv_heads:
        raise UserError(f"{model.name}: tensor_parallel_size {tp} neither divides nor is a multiple of its "
                        f"{model.kv_heads} KV heads")
    if pp > model.layers:
        raise UserError(f"{model.name}: pipeline_parallel_size {pp} exceeds its {model.layers} layers")


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)


def kv_bytes_per_token_per_layer(model: Model, tp: int, kv_cache_dtype: str) -> int:
    """MLA caches one latent vector (kv_lora_rank + rope dims) per token, replicated on every TP rank;
    GQA caches K and V for the rank's KV heads (at least one: vLLM replicates heads when TP > kv_heads)."""
    if kv_cache_dtype not in KV_DTYPE_BYTES:
        raise UserError(f"unknown kv_cache_dtype {kv_cache_dtype!r}: use one of {', '.join(KV_DTYPE_BYTES)}")
    dtype_bytes = KV_DTYPE_BYTES[kv_cache_dtype] or 2
    if model.mla:
        return (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * dtype_bytes
    return 2 * max(1, model.kv_heads // tp) * model.head_dim * dtype_bytes


def blocks_per_request(model: Model, layers: int, max_model_len: int, block: int) -> float:
    """Blocks of all `layers` one request of max_model_len needs, in units of one full-attention layer.
    Sliding-window layers (gpt-oss: every other layer) only keep the last window of tokens."""
    full = math.ceil(max_model_len / block)
    if not model.sliding_window:
        return full
    sliding_layers = layers // 2
    window = min(math.ceil((model.sliding_window - 1) / block) + 1, full)
    return ((layers - sliding_layers) * full + sliding_layers * window) / layers


def plan(inp: PlanInput) -> Plan:
    model, gpu = inp.model, inp.gpu
    validate_parallelism(model, inp.tp, inp.pp)
    if not 0 < inp.gpu_memory_utilization <= 1:
        raise UserError(f"gpu_memory_utilization {inp.gpu_memory_utilization} must be in (0, 1]")
    if inp.max_model_len < 1:
        raise UserError(f"max_model_len {inp.max_model_len} must be positive")
    seqs, tokens = default_batch_limits(gpu)
    seqs = inp.max_num_seqs or seqs
    tokens = inp.max_num_batched_tokens or max(tokens, 0)
    block = block_size(model, gpu)
    per_token_layer = kv_bytes_per_token_per_layer(model, inp.tp, inp.kv_cache_dtype)
    result = Plan(inputs=inp, max_num_seqs=seqs, max_num_batched_tokens=tokens, block_size=block,
                  kv_bytes_per_token_per_layer=per_token_layer)
    budget = inp.gpu_memory_utilization * gpu.total_gib * GiB
    weights = stage_weight_bytes(model, inp.tp, inp.pp, inp.data_parallel_size, inp.expert_parallel)
    for index, layers in enumerate(pp_partition(model.layers, inp.pp)):
        extra = overhead.overhead_bytes(model, gpu, tp=inp.tp, pp=inp.pp, last_stage=index == inp.pp - 1,
                                        max_num_seqs=seqs, max_num_batched_tokens=tokens,
                                        vllm_version=inp.vllm_version)
        kv = budget - weights[index] - extra
        page = block * per_token_layer
        num_blocks = max(0, int(kv // page // layers))
        need = blocks_per_request(model, layers, inp.max_model_len, block)
        result.stages.append(Stage(layers=layers, weights_bytes=weights[index], overhead_bytes=extra,
                                   kv_bytes=kv, num_blocks=num_blocks, kv_cache_tokens=num_blocks * block,
                                   max_concurrency=num_blocks / need))
    return result
