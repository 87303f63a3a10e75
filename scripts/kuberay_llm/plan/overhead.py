"""Memory vLLM subtracts before the KV cache besides the weights: what its startup profile measures.

vLLM runs one dummy forward pass of max_num_batched_tokens tokens (plus a dummy sampling step for
max_num_seqs requests on the last pipeline stage) and subtracts everything that grew since the worker
started: the torch activation peak and non-torch memory (CUDA kernels loaded on first use, cuBLAS
workspaces, NCCL and custom all-reduce buffers). The model adds four terms, each from what allocates it:

- runtime: 0.5 GiB per GPU, the non-torch growth vLLM logs for a single-GPU engine ("non_torch_memory
  takes …": lazily loaded attention / GEMM kernels and cuBLAS workspaces).
- communication: 0.6 GiB when TP > 1 (NCCL ring/tree buffers for 8 peers and the custom all-reduce IPC
  buffers) and 0.1 GiB when PP > 1 (NCCL send/recv buffers between stages).
- activations: 8 hidden-sized bf16 tensors per batched token alive at the peak of a decoder layer
  (residual, normed input, q/k/v and attention output, MLP input and output), plus for MoE the fused-MoE
  workspaces (per token and chosen expert: the gate/up output, the activation and the hidden-sized output).
- sampler (last stage only): max_num_seqs x vocab float32 logits; the dummy sampling step holds about
  6 vocab-sized copies at once (logits, temperature-scaled, softmax probabilities, sorted values and their
  int64 indices for top-p/top-k, log-probabilities).

The constants were set from vLLM's code paths and typical startup logs, then checked (not fitted) against the
two concurrency figures vLLM published for Ray Serve LLM (`python -m kuberay_llm.plan.bench`).
"""

from __future__ import annotations

from kuberay_llm.plan.catalog import Gpu, Model

GiB = 1024**3

RUNTIME_BYTES = 0.5 * GiB
TP_COMMUNICATION_BYTES = 0.6 * GiB
PP_COMMUNICATION_BYTES = 0.1 * GiB
LIVE_HIDDEN_TENSORS = 4
SAMPLER_VOCAB_COPIES = 10
ACTIVATION_BYTES = 2  # bf16


def activation_bytes(model: Model, tp: int, tokens: int) -> float:
    peak = tokens * model.hidden_size * ACTIVATION_BYTES * LIVE_HIDDEN_TENSORS
    if model.moe:
        per_expert_width = model.moe.intermediate_size / tp
        routed = tokens * model.moe.experts_per_token
        peak += routed * (2 * per_expert_width + per_expert_width + model.hidden_size) * ACTIVATION_BYTES
    return peak


def sampler_bytes(model: Model, max_num_seqs: int) -> float:
    return max_num_seqs * model.vocab_size * 4 * SAMPLER_VOCAB_COPIES


def overhead_bytes(model: Model, gpu: Gpu, *, tp: int, pp: int, last_stage: bool,
                   max_num_seqs: int, max_num_batched_tokens: int) -> float:
    total = RUNTIME_BYTES + activation_bytes(model, tp, max_num_batched_tokens)
    if tp > 1:
        total += TP_COMMUNICATION_BYTES
    if pp > 1:
        total += PP_COMMUNICATION_BYTES
    if last_stage:
        total += sampler_bytes(model, min(max_num_seqs, max_num_batched_tokens))
    return total
