"""Bytes of weights each GPU holds, the way vLLM shards them.

Tensor parallel (TP) splits q/o projections, MLPs, experts (each expert's intermediate dim, no expert
parallelism) and the vocabulary (VocabParallelEmbedding / ParallelLMHead). K/V projections split by KV
head, but a rank never holds less than one KV head (vLLM replicates KV heads when TP > kv_heads). MLA's
down-projections (q_a_proj, kv_a_proj_with_mqa) and MoE routers are replicated on every rank. MLA also
keeps bf16 copies of kv_b_proj split into W_UK / W_UV for the decode kernels. Pipeline parallel (PP)
stages hold their own layers; the embedding lives on the first stage, the final norm and lm_head on the
last (on the first too when they are tied).
"""

from __future__ import annotations

from dataclasses import dataclass

from kuberay_llm.plan.catalog import Model

BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def pp_partition(layers: int, pp: int) -> list[int]:
    """Layers per stage as vLLM splits them (vllm/distributed/utils.py get_pp_indices): an even split, with the
    remainder added from the second-to-last stage backwards, sparing the last stage (it also holds lm_head)."""
    partitions = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        partitions[-i] += 1
    return partitions


@dataclass
class _Bytes:
    """Parameter bytes of one GPU, by storage format."""

    dense: float = 0.0      # stored in the model dtype
    quantized: float = 0.0  # parameters stored quantized (counted in parameters, converted at the end)

    def add(self, params: float, quantized: bool) -> None:
        if quantized:
            self.quantized += params
        else:
            self.dense += params


def _quantized_bytes_per_param(model: Model) -> float:
    q = model.quantization
    if q is None:
        return BYTES[model.dtype]
    if q.method == "fp8-block":  # 1 byte per value + one float32 scale per 128x128 block
        return 1 + 4 / q.block_elements
    if q.method == "mxfp4":      # 4 bits per value + one e8m0 byte per 32 values
        return 0.5 + 1 / q.block_elements
    raise ValueError(f"{model.name}: unknown quantization {q.method}")


def layer_params(model: Model, layer: int, tp: int, dp: int = 1, expert_parallel: bool = False) -> _Bytes:
    """Parameters of decoder layer `layer` held by one TP rank. With data parallel attention (`dp` > 1) vLLM
    shards the routed experts over all TP x DP ranks: a 1/(TP x DP) slice of every expert, or with
    enable_expert_parallel ceil(experts / (TP x DP)) whole experts per rank (vLLM 0.29,
    vllm/model_executor/layers/fused_moe/config.py FusedMoEParallelConfig.make, expert_map_manager.py)."""
    h, out = model.hidden_size, _Bytes()
    q = model.quantization
    linear_q = q is not None and q.applies_to == "linear"
    expert_q = q is not None and q.applies_to in ("linear", "experts")
    out.add(2 * h, False)  # input and post-attention RMSNorm, replicated
    if model.mla:
        m = model.mla
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        out.add(h * m.q_lora_rank + h * (m.kv_lora_rank + m.qk_rope_head_dim), linear_q)  # replicated
        out.add(m.q_lora_rank + m.kv_lora_rank, False)  # q_a / kv_a layernorms
        kv_b = m.kv_lora_rank * model.attention_heads * (m.qk_nope_head_dim + m.v_head_dim) / tp
        q_in = m.q_lora_rank or h  # no q LoRA (DeepSeek-V2-Lite): q_proj reads the hidden state directly
        out.add(q_in * model.attention_heads * qk_head / tp + kv_b
                + model.attention_heads * m.v_head_dim * h / tp, linear_q)
        out.add(kv_b, False)  # W_UK / W_UV: kv_b_proj dequantized for the absorbed decode path
    else:
        heads, kv_heads, d = model.attention_heads / tp, max(1.0, model.kv_heads / tp), model.head_dim
        out.add(h * heads * d + 2 * h * kv_heads * d + heads * d * h, linear_q)
        if model.attention_bias in ("qkv", "all"):
            out.add(heads * d + 2 * kv_heads * d, False)
        if model.attention_bias == "all":
            out.add(h + heads, False)  # o_proj bias (replicated) and one attention sink per head
        if model.qk_norm:
            out.add(2 * d, False)  # q_norm and k_norm over head_dim, replicated
    moe = model.moe
    if moe and layer >= moe.first_dense_layers:
        per_expert = 3 * h * moe.intermediate_size / tp
        ranks = tp * dp
        local, expert_slice = (-(-moe.experts // ranks), 1) if expert_parallel and ranks > 1 else (moe.experts, ranks)
        out.add(local * 3 * h * moe.intermediate_size / expert_slice, expert_q)
        if moe.bias:
            out.add(local * (2 * moe.intermediate_size / expert_slice + h), False)
        out.add(moe.shared_experts * per_expert, linear_q)
        out.add(h * moe.experts + (moe.experts if moe.bias or moe.router_bias else 0), False)  # router, replicated
    else:
        out.add(3 * h * model.intermediate_size / tp, linear_q)
    return out


def stage_weight_bytes(model: Model, tp: int, pp: int, dp: int = 1, expert_parallel: bool = False) -> list[float]:
    """Bytes of weights on one GPU of each pipeline stage (`dp`, `expert_parallel`: see layer_params)."""
    per_param = _quantized_bytes_per_param(model)
    vocab_shard = model.vocab_size * model.hidden_size / tp
    sizes, start = [], 0
    for stage, count in enumerate(pp_partition(model.layers, pp)):
        total = _Bytes()
        for layer in range(start, start + count):
            part = layer_params(model, layer, tp, dp, expert_parallel)
            total.dense += part.dense
            total.quantized += part.quantized
        start += count
        first, last = stage == 0, stage == pp - 1
        if first:
            total.add(vocab_shard, False)  # embed_tokens
            total.add(vision_params(model, tp), False)  # the image encoder runs before the first layer
        if last:
            total.add(model.hidden_size, False)  # final norm
            if not model.tie_word_embeddings or not first:
                total.add(vocab_shard, False)  # lm_head (a tied head on another stage is a copy)
        sizes.append(total.dense * BYTES[model.dtype] + total.quantized * per_param)
    return sizes


def total_parameters(model: Model) -> int:
    """Parameters of the checkpoint as published (TP 1, no dequantized copies): checks the data file."""
    total = 0.0
    for layer in range(model.layers):
        part = layer_params(model, layer, 1)
        total += part.dense + part.quantized
        if model.mla:  # W_UK / W_UV are vLLM's runtime copies, not checkpoint parameters
            m = model.mla
            total -= m.kv_lora_rank * model.attention_heads * (m.qk_nope_head_dim + m.v_head_dim)
    embeddings = 1 if model.tie_word_embeddings else 2
    return round(total + embeddings * model.vocab_size * model.hidden_size + model.hidden_size
                 + vision_params(model, 1))


def vision_params(model: Model, tp: int) -> float:
    """Parameters of the vision tower on one TP rank (0 for a text-only model). vLLM shards its attention,
    MLP and merger projections like the language model's (mm_encoder_tp_mode "weights", the default:
    vllm/model_executor/models/qwen2_5_vl.py QKVParallelLinear, MergedColumnParallelLinear, RowParallelLinear;
    row-parallel biases stay whole) and replicates the patch embedding and the norms."""
    v = model.vision
    if v is None:
        return 0.0
    h, inter, merged = v.hidden_size, v.intermediate_size, v.hidden_size * v.spatial_merge_size ** 2
    patch_embed = v.in_channels * v.temporal_patch_size * v.patch_size ** 2 * h  # Conv3d, no bias
    block = (2 * h                                 # norm1, norm2
             + (3 * h * h + 3 * h) / tp + h * h / tp + h  # qkv (+bias), proj (+bias)
             + (2 * h * inter + 2 * inter) / tp + inter * h / tp + h)  # gate_up (+bias), down (+bias)
    merger = h + (merged * merged + merged) / tp + merged * v.out_hidden_size / tp + v.out_hidden_size
    return patch_embed + v.depth * block + merger
