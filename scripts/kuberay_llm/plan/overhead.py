"""Memory vLLM takes from the KV-cache budget besides the weights, per GPU.

vLLM (v0.26, vllm/v1/worker/gpu_worker.py determine_available_memory) sizes the KV cache as

    kv = gpu_memory_utilization x total - weights - peak activation - non-torch increase - CUDA graph estimate

and logs every term at start-up (bench/gpu/vllm_log.py lists the lines). This module models the three terms
after the weights:

- non-torch: memory outside torch's allocator that grows during the profile run (CUDA modules loaded on first
  use, cuBLAS workspaces). NON_TORCH_BYTES, fitted.
- peak activation: torch's allocator peak during the profile forward pass over max_num_batched_tokens
  tokens, ACTIVATION_BASE_BYTES (fitted) + tokens x per_token_bytes(model). per_token_bytes is not fitted: it
  counts, from the model's shapes, the bf16 tensors alive at the peak of one layer's MLP: dense, the fused
  gate_up output (2 x intermediate / TP) and the activation output (intermediate / TP); MoE (vLLM's fused
  Triton MoE), per routed token its two intermediate caches (2 x width / TP, width / TP) and its hidden-sized
  output cache; plus LIVE_HIDDEN_TENSORS hidden-sized tensors (residual, normed input, layer input and
  output), a count chosen from the code, not fitted. The dummy sampler step (max_num_seqs x vocab logits)
  stays below the forward pass at every measured point (up to 1024 x 128,256 on Llama-3.1-8B) and is not
  modeled.
- CUDA graphs: vLLM's V1 model runner captures its graphs once while profiling and subtracts the estimate:
  the largest first capture + a per-graph cost for every further PIECEWISE graph (one per capture size) and
  FULL graph (capture sizes up to max_num_seqs). CUDA_GRAPH_* are fitted. vLLM 0.26 runs the V2 model
  runner, which subtracts nothing, for dense models and DeepSeek-V2's MoE family (V2_MOE_ARCHITECTURES); its
  graphs are captured after the KV cache is sized, so the GPU ends above the utilization target by their size
  (0.22 GiB for Llama-3.1-8B at max_num_seqs 64). vLLM 0.29, the version the tiers deploy
  (DEPLOYED_VLLM_VERSION), runs the V2 runner for every model and its V2 runner does estimate and subtract the
  graphs (vllm/v1/worker/gpu/model_runner.py profile_cudagraph_memory, 0.29): the planner applies the same
  estimate to every model there, an assumption no measurement has checked yet.
- communication, TP > 1: TP_COMMUNICATION_BYTES (NCCL buffers and the custom all-reduce IPC buffers); PP > 1:
  PP_COMMUNICATION_BYTES. Not measured (the measurements are single-GPU): estimates, unverified.

All measurements are vLLM 0.26.0's. vLLM 0.29 computes the non-KV memory from other readings (free memory
consumed since the worker started + torch's transient peak above what stays allocated, vllm/utils/mem_utils.py
0.29) over the same terms; the constants are 0.26's until a 0.29 measurement exists.

Fitted constants come from FIT_POINTS of the measured data (scripts/kuberay_llm/data/
measured-vllm-0.26-h200.yaml) and from no other point: `python -m kuberay_llm.plan.bench` re-derives them from
those points (fit_constants), fails when the literals below drift from that, and reports every other measured
point as held out.
"""

from __future__ import annotations

import math

from kuberay_llm.plan.catalog import Gpu, Model

GiB = 1024**3
MiB = 1024**2

# The measured points the fitted constants below come from: one per architecture, at vLLM's default
# max_num_batched_tokens (8192) on the H200. All other measured points are held out.
FIT_POINTS = ("L1", "M1", "D1")

NON_TORCH_BYTES = 0.2233 * GiB        # fitted: mean non-torch increase of FIT_POINTS
ACTIVATION_BASE_BYTES = 0.2257 * GiB  # fitted: mean of (peak activation - tokens x per_token_bytes) of FIT_POINTS
CUDA_GRAPH_FIRST_CAPTURE_BYTES = 130 * MiB  # fitted: M1's "Estimated FULL CUDA graph memory" first capture
CUDA_GRAPH_PIECEWISE_BYTES = 4 * MiB        # fitted: M1's per-graph PIECEWISE cost
CUDA_GRAPH_FULL_BYTES = 2 * MiB             # fitted: M1's per-graph FULL cost
TP_COMMUNICATION_BYTES = 0.6 * GiB    # not measured
PP_COMMUNICATION_BYTES = 0.1 * GiB    # not measured
LIVE_HIDDEN_TENSORS = 4               # chosen, not fitted
ACTIVATION_BYTES = 2                  # bf16

# vllm/config/vllm.py (v0.26) DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES: MoE models served by the V2 runner
V2_MOE_ARCHITECTURES = frozenset({"DeepseekV2ForCausalLM", "GraniteMoeForCausalLM", "Qwen2MoeForCausalLM"})
# The vLLM the tiers deploy: ray[llm]==2.60.0 (pyproject.toml's Ray pin) requires vllm[audio]==0.29.0.
DEPLOYED_VLLM_VERSION = "0.29.0"


def per_token_bytes(model: Model, tp: int) -> float:
    """Activation bytes per batched token at the peak of one layer (see the module docstring)."""
    hidden = LIVE_HIDDEN_TENSORS * model.hidden_size
    if model.moe:
        width = model.moe.intermediate_size / tp
        mlp = model.moe.experts_per_token * (2 * width + width + model.hidden_size)
    else:
        width = model.intermediate_size / tp
        mlp = 2 * width + width
    return (hidden + mlp) * ACTIVATION_BYTES


def activation_bytes(model: Model, tp: int, tokens: int) -> float:
    return ACTIVATION_BASE_BYTES + tokens * per_token_bytes(model, tp)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def subtracts_cuda_graphs(model: Model, vllm_version: str) -> bool:
    """vLLM 0.26 (VllmConfig.use_v2_model_runner): only the V1 runner, which serves MoE models outside
    V2_MOE_ARCHITECTURES, subtracts a CUDA graph estimate; from 0.29 every model's (V2) runner does."""
    if _version(vllm_version) >= (0, 29):
        return True
    return model.moe is not None and model.architecture not in V2_MOE_ARCHITECTURES


def capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """vLLM's default CUDA graph capture sizes (vllm/config/vllm.py _set_cudagraph_sizes): 1, 2, 4, then steps
    of 8 below 256 and of 16 from 256, up to min(2 x max_num_seqs, 512, max_num_batched_tokens)."""
    top = min(2 * max_num_seqs, 512, max_num_batched_tokens)
    sizes = [s for s in (1, 2, 4) if s <= top]
    sizes += list(range(8, min(top + 1, 256), 8)) + list(range(256, top + 1, 16))
    return sizes


def cuda_graph_bytes(model: Model, max_num_seqs: int, max_num_batched_tokens: int,
                     vllm_version: str = DEPLOYED_VLLM_VERSION) -> float:
    """The CUDA graph estimate vLLM subtracts from the KV budget (0 where its model runner subtracts none)."""
    if not subtracts_cuda_graphs(model, vllm_version):
        return 0.0
    sizes = capture_sizes(max_num_seqs, max_num_batched_tokens)
    full = [s for s in sizes if s <= max_num_seqs]
    return (CUDA_GRAPH_FIRST_CAPTURE_BYTES + CUDA_GRAPH_PIECEWISE_BYTES * (len(sizes) - 1)
            + CUDA_GRAPH_FULL_BYTES * max(0, len(full) - 1))


def overhead_bytes(model: Model, gpu: Gpu, *, tp: int, pp: int, last_stage: bool, max_num_seqs: int,
                   max_num_batched_tokens: int, vllm_version: str = DEPLOYED_VLLM_VERSION) -> float:
    total = (NON_TORCH_BYTES + activation_bytes(model, tp, max_num_batched_tokens)
             + cuda_graph_bytes(model, max_num_seqs, max_num_batched_tokens, vllm_version))
    if tp > 1:
        total += TP_COMMUNICATION_BYTES
    if pp > 1:
        total += PP_COMMUNICATION_BYTES
    return total


def fit_constants(points: list[dict], models: dict[str, Model]) -> dict[str, float]:
    """The fitted constants (bytes) from measured points, each a measured-data entry; `models` maps their
    `model` ids to catalog entries. bench.py runs this on FIT_POINTS and compares with the literals above."""
    non_torch = [p["measured"]["non_torch_gib"] for p in points]
    base = [p["measured"]["peak_activation_gib"] * GiB
            - p["settings"]["max_num_batched_tokens"] * per_token_bytes(models[p["model"]], p["tensor_parallel_size"])
            for p in points]
    fitted = {"NON_TORCH_BYTES": sum(non_torch) / len(non_torch) * GiB, "ACTIVATION_BASE_BYTES": sum(base) / len(base)}
    modes = [p["cudagraph_modes"] for p in points if p.get("cudagraph_modes")]
    if modes:
        fitted["CUDA_GRAPH_FIRST_CAPTURE_BYTES"] = max(
            m["first_capture_mib"] for ms in modes for m in ms.values()) * MiB
        for mode, key in (("PIECEWISE", "CUDA_GRAPH_PIECEWISE_BYTES"), ("FULL", "CUDA_GRAPH_FULL_BYTES")):
            per = [ms[mode]["per_graph_mib"] for ms in modes if mode in ms]
            fitted[key] = sum(per) / len(per) * MiB
    return fitted


def constants() -> dict[str, float]:
    """The literals above, by name (for comparison with fit_constants)."""
    names = ("NON_TORCH_BYTES", "ACTIVATION_BASE_BYTES", "CUDA_GRAPH_FIRST_CAPTURE_BYTES",
             "CUDA_GRAPH_PIECEWISE_BYTES", "CUDA_GRAPH_FULL_BYTES")
    return {n: globals()[n] for n in names}


def rounded_gib(value: float) -> float:
    """How the literals are written: GiB to 4 decimals."""
    return math.floor(value / GiB * 10**4 + 0.5) / 10**4
