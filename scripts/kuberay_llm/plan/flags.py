"""`kuberay-llm plan`'s numeric and engine flags: range-checked, and refused where they would be ignored.

vLLM's own bounds (the ones kuberay_llm.serveconfig.ENGINE_SETTINGS checks in serve configs): parallel sizes,
max_model_len, max_num_seqs and max_num_batched_tokens at least 1, gpu_memory_utilization in (0, 1], a known KV
cache dtype, and max_model_len within the model's context. With an overlay the serve config sets every engine
argument, so a flag that would override one is an error, not silently ignored: --gpu is the one override.
"""

from __future__ import annotations

import argparse
import math

from kuberay_llm.errors import UserError
from kuberay_llm.plan.accounting import KV_DTYPE_BYTES
from kuberay_llm.plan.catalog import Model

# attribute -> (flag, the serve-config field it stands for)
ENGINE_FLAGS = {
    "tp": ("--tp", "tensor_parallel_size"),
    "pp": ("--pp", "pipeline_parallel_size"),
    "max_model_len": ("--max-model-len", "max_model_len"),
    "gpu_memory_utilization": ("--gpu-memory-utilization", "gpu_memory_utilization"),
    "max_num_seqs": ("--max-num-seqs", "max_num_seqs"),
    "max_num_batched_tokens": ("--max-num-batched-tokens", "max_num_batched_tokens"),
    "kv_cache_dtype": ("--kv-cache-dtype", "kv_cache_dtype"),
}
AT_LEAST_ONE = ("tp", "pp", "max_model_len", "max_num_seqs", "max_num_batched_tokens")


def check(args: argparse.Namespace) -> None:
    """Raise a UserError for a flag out of range, or one the named overlay would ignore."""
    for attr in AT_LEAST_ONE:
        value = getattr(args, attr, None)
        if value is not None and value < 1:
            raise UserError(f"{ENGINE_FLAGS[attr][0]} {value}: must be at least 1")
    fraction = getattr(args, "gpu_memory_utilization", None)
    if fraction is not None and not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise UserError(f"--gpu-memory-utilization {fraction}: must be a fraction in (0, 1], e.g. 0.9")
    dtype = getattr(args, "kv_cache_dtype", None)
    if dtype is not None and dtype not in KV_DTYPE_BYTES:
        raise UserError(f"--kv-cache-dtype {dtype!r}: use one of {', '.join(KV_DTYPE_BYTES)}")
    if args.overlay and not args.model:
        given = [flag for attr, (flag, _) in ENGINE_FLAGS.items() if getattr(args, attr, None) is not None]
        if given:
            fields = ", ".join(ENGINE_FLAGS[a][1] for a, (f, _) in ENGINE_FLAGS.items() if f in given)
            raise UserError(f"{' '.join(given)} would be ignored: overlay {args.overlay} sets {fields} in its "
                            "serve config (only --gpu overrides an overlay); change the overlay's serve-config.yaml, "
                            "or plan ad-hoc settings with --model")


def check_against_model(args: argparse.Namespace, model: Model) -> None:
    if args.max_model_len is not None and args.max_model_len > model.max_position_embeddings:
        raise UserError(f"--max-model-len {args.max_model_len}: {model.name}'s context is "
                        f"{model.max_position_embeddings:,} tokens (vLLM refuses a longer max_model_len)")
