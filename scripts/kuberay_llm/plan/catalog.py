"""Model and GPU facts, loaded from kuberay_llm/data/{models,gpus}.yaml (offline: no Hugging Face calls)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kuberay_llm.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Mla:
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Moe:
    experts: int
    experts_per_token: int
    intermediate_size: int
    shared_experts: int = 0
    first_dense_layers: int = 0
    bias: bool = False         # expert and router biases (gpt-oss)
    router_bias: bool = False  # DeepSeek's e_score_correction_bias


@dataclass(frozen=True)
class Quantization:
    method: str          # fp8-block | mxfp4
    block_elements: int  # elements sharing one scale
    applies_to: str      # linear (every projection) | experts (MoE experts only)
    quant_method: str = ""  # config.json quantization_config.quant_method: vLLM's method name (fp8, mxfp4)


@dataclass(frozen=True)
class Vision:
    """A Qwen2.5-VL style vision tower (config.json vision_config): patch embedding, `depth` blocks of
    attention + gated MLP with biases, and a patch merger MLP into the language model's hidden size."""

    depth: int
    hidden_size: int
    intermediate_size: int
    out_hidden_size: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    in_channels: int = 3


@dataclass(frozen=True)
class Reasoning:
    """How vLLM separates the model's thinking from its answer."""

    parser: str          # the vLLM reasoning parser for this model family (engine_kwargs.reasoning_parser)
    switch: str = ""     # chat_template_kwargs key that turns thinking on and off per request (hybrid models)


@dataclass(frozen=True)
class Model:
    name: str
    source: str
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int  # vLLM's max_model_len when the config sets none
    parameters: int
    parameters_tolerance: float = 0.0  # relative rounding of a published count given only as "15.7B" (0: exact)
    architecture: str = ""        # config.json architectures[0] (vLLM picks its model runner by it for MoE models)
    tie_word_embeddings: bool = False
    attention_bias: str = "none"  # none | qkv | all
    dtype: str = "bfloat16"
    sliding_window: int | None = None
    mla: Mla | None = None
    moe: Moe | None = None
    quantization: Quantization | None = None
    qk_norm: bool = False         # RMSNorm over head_dim on q and k in every layer (Qwen3)
    mtp_layers: int = 0           # num_nextn_predict_layers: in the checkpoint, loaded only for speculative decoding
    vision: Vision | None = None  # multimodal: the image encoder (None: text only)
    reasoning: Reasoning | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Gpu:
    name: str
    total_gib: float
    architecture: str
    ray_accelerator_types: tuple[str, ...]
    labels: tuple[str, ...]
    bf16_dense_tflops: float = 0.0  # data-sheet peak, tensor cores, no sparsity (0: not known)
    memory_tbps: float = 0.0        # data-sheet peak memory bandwidth, TB/s (0: not known)


def _load(name: str) -> dict:
    return yaml.safe_load((DATA_DIR / name).read_text())


def _model(name: str, raw: dict) -> Model:
    raw = dict(raw)
    mla, moe, quant = raw.pop("mla", None), raw.pop("moe", None), raw.pop("quantization", None)
    vision, reasoning = raw.pop("vision", None), raw.pop("reasoning", None)
    return Model(name=name, aliases=tuple(raw.pop("aliases", ())),
                 mla=Mla(**mla) if mla else None, moe=Moe(**moe) if moe else None,
                 quantization=Quantization(**quant) if quant else None,
                 vision=Vision(**vision) if vision else None, reasoning=Reasoning(**reasoning) if reasoning else None,
                 **raw)


@functools.cache
def models() -> dict[str, Model]:
    """Every known model under its own id and under each alias (lower-cased keys)."""
    table: dict[str, Model] = {}
    for name, raw in _load("models.yaml")["models"].items():
        model = _model(name, raw)
        for key in (name, *model.aliases):
            table[key.lower()] = model
    return table


@functools.cache
def gpus() -> dict[str, Gpu]:
    return {name: Gpu(name=name, total_gib=raw["total_gib"], architecture=raw["architecture"],
                      ray_accelerator_types=tuple(raw["ray_accelerator_types"]), labels=tuple(raw["labels"]),
                      bf16_dense_tflops=float(raw.get("bf16_dense_tflops", 0.0)),
                      memory_tbps=float(raw.get("memory_tbps", 0.0)))
            for name, raw in _load("gpus.yaml")["gpus"].items()}


def model_names() -> list[str]:
    return sorted({m.name for m in models().values()})


def find_model(model_id: str) -> Model:
    """A model by Hugging Face id or mirror id (case-insensitive)."""
    table = models()
    key = model_id.strip().rstrip("/").lower()
    if key in table:
        return table[key]
    raise UserError(f"unknown model {model_id!r}: the planner knows {', '.join(model_names())} "
                    "(add it to scripts/kuberay_llm/data/models.yaml from its config.json)")


def find_gpu(name: str) -> Gpu:
    """A GPU by catalog name (H100-80GB), Ray accelerator type (A100-40G) or node label (NVIDIA-L4)."""
    wanted = name.strip().lower()
    for gpu in gpus().values():
        if wanted in {gpu.name.lower(), *(t.lower() for t in gpu.ray_accelerator_types),
                      *(label.lower() for label in gpu.labels)}:
            return gpu
    raise UserError(f"unknown GPU {name!r}: the planner knows {', '.join(gpus())}")
