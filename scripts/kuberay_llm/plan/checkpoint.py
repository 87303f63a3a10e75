"""Bytes of a model's published checkpoint: what every node downloads into its weights volume.

Ray Serve LLM downloads the whole repository on each node of a replica's placement group before vLLM loads
its share, so a node holds all of it, whatever its tensor or pipeline rank. The size is computed from the
catalog (model.safetensors holds every parameter once, in the checkpoint's own formats) rather than copied:
the dense parameters at the model dtype, quantized ones at their storage bytes with their scales, plus
what vLLM does not load for serving (DeepSeek's multi-token-prediction layer). tests/test_overlays_seeds.py
checks it against published safetensors sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberay_llm.plan.catalog import Model
from kuberay_llm.plan.weights import BYTES, _quantized_bytes_per_param, layer_params, vision_params

GB = 10**9
SHORT_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


@dataclass(frozen=True)
class Checkpoint:
    dense_params: int        # stored in the model dtype
    dense_bytes_per_param: int
    quantized_params: int    # stored quantized (values + scales)
    quantized_bytes_per_param: float
    quantization: str        # the checkpoint's quant_method, "" when none
    dtype: str = "bfloat16"  # of the dense parameters

    @property
    def bytes(self) -> int:
        return round(self.dense_params * self.dense_bytes_per_param
                     + self.quantized_params * self.quantized_bytes_per_param)

    def arithmetic(self) -> str:
        """`8.29B parameters × 2 bytes = 16.6 GB`, with a second term for quantized weights."""
        dense = (f"{self.dense_params / 1e9:.2f}B {SHORT_DTYPE.get(self.dtype, self.dtype)} parameters × "
                 f"{self.dense_bytes_per_param} bytes")
        if not self.quantized_params:
            return f"{dense} = {self.bytes / GB:.1f} GB"
        return (f"{self.quantized_params / 1e9:.2f}B {self.quantization or 'quantized'} parameters × "
                f"{self.quantized_bytes_per_param:.5g} bytes + {dense} = {self.bytes / GB:.1f} GB")


def _mla_runtime_copies(model: Model) -> int:
    """W_UK / W_UV: vLLM's dequantized runtime copies of kv_b_proj (layer_params counts them), not in the files."""
    m = model.mla
    return m.kv_lora_rank * model.attention_heads * (m.qk_nope_head_dim + m.v_head_dim) if m else 0


def checkpoint(model: Model) -> Checkpoint:
    dense, quantized = 0.0, 0.0
    for layer in range(model.layers):
        part = layer_params(model, layer, 1)
        dense, quantized = dense + part.dense - _mla_runtime_copies(model), quantized + part.quantized
    h, vocab = model.hidden_size, model.vocab_size
    dense += (1 if model.tie_word_embeddings else 2) * vocab * h + h + vision_params(model, 1)
    for _ in range(model.mtp_layers):
        # One more decoder layer (a MoE layer: its index is past first_k_dense_replace) plus DeepSeek's MTP
        # glue: enorm, hnorm, eh_proj (2h -> h), shared_head.norm and its own embed_tokens and head copies.
        part = layer_params(model, model.layers, 1)
        dense += part.dense - _mla_runtime_copies(model) + 3 * h + 2 * h * h + 2 * vocab * h
        quantized += part.quantized
    q = model.quantization
    return Checkpoint(round(dense), BYTES[model.dtype], round(quantized),
                      _quantized_bytes_per_param(model) if quantized else 0.0, q.quant_method if q else "",
                      model.dtype)


def checkpoint_bytes(model: Model) -> int:
    return checkpoint(model).bytes
