"""vLLM's serving speed per (model, GPU, TP, PP, max_num_seqs, max_num_batched_tokens), from first principles
scaled by fitted efficiencies (the constants of kuberay_llm/data/perf-fit.yaml, fitted by kuberay_llm.plan.perf_fit).

One engine step (one forward pass of vLLM's v1 scheduler: every running decode gets one token, prefill chunks fill
the rest of the max_num_batched_tokens budget) takes

    step = step_overhead + FLOPs / (compute_efficiency x peak BF16) + bytes / (bandwidth_efficiency x peak bandwidth)
           + TP all-reduces

- FLOPs: 2 x active parameters x tokens (prefill and decode tokens alike; lm_head only for sampled tokens)
  + attention, 4 x layers x heads x head_dim per (query token, context token) pair, over TP.
- bytes: the GPU's weights (for MoE only the experts a batch of that many tokens touches on average) + the KV
  cache the step reads (every decode's context, every prefill chunk's earlier tokens).
- TP > 1: two all-reduces per layer, each ALLREDUCE_LATENCY_S plus its bytes over NVLINK_BYTES_PER_S, or
  PCIE_BYTES_PER_S on the GPUs without NVLink (L4, L40S, A10G) (assumed, not fitted: every measurement so far is
  TP 1). PP > 1: the stages run one after another with one batch in
  flight (vLLM overlaps PP micro-batches, so throughput is a lower bound there; unmeasured too).

Step time is linear in the work, so a run of pure-decode steps is summed in closed form.

Batching: at most max_num_seqs requests run at once, within the planner's KV capacity (kuberay_llm.plan.accounting,
vLLM's own accounting to within 1%): the closed loop admits on the tokens a step computes and preempts as vLLM
does (below); the open loop needs the whole prompt + output of its mean batch to fit (its steady state).

Closed loop (`closed_loop`): N clients, each sending its next request when the last finishes, `num_prompts` in
all, as `vllm bench serve --max-concurrency N` does; simulated step by step on cohorts (requests in the same
state move together), giving TTFT p50/p90, TPOT p50 and output tokens/s as the benchmark computes them.

Open loop (`open_loop`, for `kuberay-llm size --rps`): Poisson arrivals at `rate` per replica. The approximation:
decode step time tau solves the fixed point tau = step(n decodes, p prefill tokens) with n = rate x output x tau
(Little's law) and p = rate x input x tau (the prompt tokens arriving per step), closed form because step is
linear; stable while rate x (output x decode cost + input x prefill cost) < 1 per second and n fits the batch
limits. TTFT = request overhead + half a step (arrival to the next step boundary) + the M/D/1 wait for the
prefill budget (server: max_num_batched_tokens - n tokens per step; utilisation rho = p / (budget - n); mean
wait rho S / 2(1 - rho), S the request's prefill service time) + its own prefill steps; the half step is scaled
by the chance the engine is busy, 1 - exp(-rate x time in system). p90 takes the wait's
tail as exponential with the M/D/1 mean and an atom 1 - rho at zero: P(W > t) = rho exp(-rho t / mean).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from kuberay_llm.errors import UserError
from kuberay_llm.plan import weights as weights_mod
from kuberay_llm.plan.accounting import PlanInput, kv_bytes_per_token_per_layer, plan
from kuberay_llm.plan.catalog import Gpu, Model

ALLREDUCE_LATENCY_S = 8e-6     # one NCCL all-reduce of a small message on NVLink (assumed, unmeasured here)
NVLINK_BYTES_PER_S = 300e9     # effective all-reduce bus bandwidth per GPU (assumed: H100 NVLink 450 GB/s one way)
PCIE_BYTES_PER_S = 20e9        # the same through PCIe 4.0 x16 (32 GB/s one way; assumed)
NVLINK_GPUS = ("H100", "H200", "B200", "A100")  # catalog name prefixes of the SXM parts (the others are PCIe cards)


@dataclass(frozen=True)
class Constants:
    """The fitted efficiencies (kuberay_llm/data/perf-fit.yaml)."""

    compute_efficiency: float    # fraction of the data-sheet BF16 dense peak the step's FLOPs run at
    bandwidth_efficiency: float  # fraction of the data-sheet memory bandwidth the step's bytes move at
    step_overhead_s: float       # per engine step: scheduling, sampling, kernel launches
    request_overhead_s: float    # per request, on its TTFT: HTTP, tokenisation, the first streamed chunk


@dataclass(frozen=True)
class Engine:
    """One vLLM engine (one replica): what the step time and the batching depend on."""

    model: Model
    gpu: Gpu
    tp: int = 1
    pp: int = 1
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_cache_tokens: int = 0   # 0: the planner's figure
    block_size: int = 16
    max_model_len: int = 8192
    kv_cache_dtype: str = "auto"
    gpu_memory_utilization: float = 0.9

    def with_kv_from_planner(self) -> "Engine":
        result = plan(PlanInput(model=self.model, gpu=self.gpu, tp=self.tp, pp=self.pp,
                                max_model_len=self.max_model_len, gpu_memory_utilization=self.gpu_memory_utilization,
                                max_num_seqs=self.max_num_seqs, max_num_batched_tokens=self.max_num_batched_tokens,
                                kv_cache_dtype=self.kv_cache_dtype))
        return Engine(**{**self.__dict__, "kv_cache_tokens": result.kv_cache_tokens if result.fits else 0,
                         "block_size": result.block_size})


@dataclass(frozen=True)
class _Cost:
    """Per-GPU work coefficients of one engine: seconds per unit of each kind of work."""

    fixed: float          # per step: overhead + dense weights read + TP latency
    per_token: float      # per scheduled token: its FLOPs + its TP all-reduce bytes
    per_sampled: float    # per sampled token: lm_head FLOPs
    per_ctx: float        # per context token of a decode: its attention FLOPs + reading its KV
    kv_read: float        # per earlier token a prefill chunk reads: its KV bytes
    per_attn_pair: float  # per (query, context) pair of a prefill chunk: attention FLOPs
    expert_s: float       # reading every routed expert once (MoE; 0 for dense)
    expert_frac: float    # experts_per_token / experts (MoE)


def _active_linear_params(model: Model) -> float:
    """Parameters one token multiplies through (no embedding lookup, no lm_head, only routed experts it uses)."""
    total = weights_mod.total_parameters(model) - weights_mod.vision_params(model, 1)
    total -= model.vocab_size * model.hidden_size * (1 if model.tie_word_embeddings else 2)
    moe = model.moe
    if moe:
        moe_layers = model.layers - moe.first_dense_layers
        total -= moe_layers * (moe.experts - moe.experts_per_token) * 3 * model.hidden_size * moe.intermediate_size
    return total


def _expert_bytes_per_gpu(model: Model, tp: int) -> float:
    moe = model.moe
    if not moe:
        return 0.0
    q = model.quantization
    per_param = (weights_mod._quantized_bytes_per_param(model) if q and q.applies_to in ("linear", "experts")
                 else weights_mod.BYTES[model.dtype])
    return (model.layers - moe.first_dense_layers) * moe.experts * 3 * model.hidden_size * moe.intermediate_size \
        / tp * per_param


def _attention_width(model: Model) -> float:
    """Multiply-adds per (query, context) pair per layer, summed over heads: QK^T plus AV."""
    if model.mla:
        return model.attention_heads * (model.mla.kv_lora_rank * 2 + model.mla.qk_rope_head_dim)
    return model.attention_heads * model.head_dim * 2


@functools.lru_cache(maxsize=4096)
def _cost(engine: Engine, constants: Constants) -> _Cost:
    model, gpu, tp = engine.model, engine.gpu, engine.tp
    if not gpu.bf16_dense_tflops or not gpu.memory_tbps:
        raise UserError(f"{gpu.name}: no peak BF16 TFLOPS / memory bandwidth in scripts/kuberay_llm/data/gpus.yaml "
                        "(add the data sheet's figures)")
    flops_per_s = gpu.bf16_dense_tflops * 1e12 * constants.compute_efficiency
    bytes_per_s = gpu.memory_tbps * 1e12 * constants.bandwidth_efficiency
    weights = sum(weights_mod.stage_weight_bytes(model, tp, engine.pp))
    experts = _expert_bytes_per_gpu(model, tp)
    kv_per_token = kv_bytes_per_token_per_layer(model, tp, engine.kv_cache_dtype) * model.layers
    allreduces = 2 * model.layers if tp > 1 else 0
    ring = 2 * (tp - 1) / tp if tp > 1 else 0.0
    link = NVLINK_BYTES_PER_S if gpu.name.startswith(NVLINK_GPUS) else PCIE_BYTES_PER_S
    return _Cost(
        fixed=constants.step_overhead_s + (weights - experts) / bytes_per_s + allreduces * ALLREDUCE_LATENCY_S,
        per_token=2 * _active_linear_params(model) / tp / flops_per_s
        + allreduces * ring * model.hidden_size * 2 / link,
        per_sampled=2 * model.vocab_size * model.hidden_size / tp / flops_per_s,
        per_ctx=2 * model.layers * _attention_width(model) / tp / flops_per_s + kv_per_token / bytes_per_s,
        kv_read=kv_per_token / bytes_per_s,
        per_attn_pair=2 * model.layers * _attention_width(model) / tp / flops_per_s,
        expert_s=experts / bytes_per_s,
        expert_frac=(model.moe.experts_per_token / model.moe.experts) if model.moe else 0.0)


def step_seconds(engine: Engine, constants: Constants, *, decodes: int = 0, decode_context: float = 0.0,
                 prefill_tokens: int = 0, prefill_context: float = 0.0, prefill_pairs: float = 0.0,
                 sampled: int | None = None) -> float:
    """One engine step: `decodes` sequences with `decode_context` context tokens in all, `prefill_tokens` prompt
    tokens whose chunks read the KV of `prefill_context` earlier tokens and compute attention over
    `prefill_pairs` (query, context) pairs (the earlier tokens and their own causal triangle)."""
    c = _cost(engine, constants)
    tokens = decodes + prefill_tokens
    sampled = decodes if sampled is None else sampled
    touched = 1 - (1 - c.expert_frac) ** tokens if c.expert_s else 0.0
    return (c.fixed + c.expert_s * touched + c.per_token * tokens + c.per_sampled * sampled
            + c.per_ctx * decode_context + c.kv_read * prefill_context + c.per_attn_pair * prefill_pairs)


def request_capacity(engine: Engine, input_len: int, output_len: int) -> int:
    """Requests of input + output tokens the engine runs at once: max_num_seqs, or the KV cache's blocks."""
    blocks = math.ceil((input_len + output_len) / engine.block_size) * engine.block_size
    return max(0, min(engine.max_num_seqs, engine.kv_cache_tokens // blocks))


@dataclass(eq=False)  # identity: two cohorts in the same state are still two entries of the queue
class _Cohort:
    """Requests in the same state. `ctx` tokens of each are in the KV cache; `prompt_left` are still to prefill
    (after a preemption: the prompt and the output so far, recomputed)."""

    count: int
    sent: float              # when the clients sent these requests
    prompt_left: int
    ctx: int = 0
    generated: int = 0
    first_token: float = -1.0

    def part(self, count: int) -> "_Cohort":
        return _Cohort(count, self.sent, self.prompt_left, self.ctx, self.generated, self.first_token)


@dataclass
class Result:
    """What `vllm bench serve` reports for one level."""

    ttft_p50_s: float
    ttft_p90_s: float
    tpot_p50_s: float
    output_tokens_per_s: float
    request_rate: float = 0.0  # requests per second completed (closed loop) or offered (open loop)
    duration_s: float = 0.0
    binding: str = ""          # open loop: what limits the rate (empty when stable)
    batch: float = 0.0         # mean running requests
    details: dict = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """numpy.percentile's default (linear interpolation), which `vllm bench serve` uses."""
    xs = sorted(values)
    if not xs:
        return 0.0
    rank = q / 100 * (len(xs) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (rank - low)


def closed_loop(engine: Engine, constants: Constants, *, concurrency: int, input_len: int, output_len: int,
                num_prompts: int | None = None) -> Result:
    """`vllm bench serve --max-concurrency N` with fixed lengths (random prompts, --ignore-eos).

    Each step follows vLLM's v1 scheduler: running requests first, in admission order (a decode takes one token of
    the max_num_batched_tokens budget, a prefill in progress its next chunk), then waiting ones, first come first
    served, while max_num_seqs and the KV cache allow; a running request that finds no KV room for its step
    preempts the latest admitted ones, which return to the head of the queue to recompute prompt and output so far
    (and no waiting request is admitted in that step).
    Block rounding costs each request half a block of the cache on average."""
    if input_len < 1 or output_len < 1 or concurrency < 1:
        raise UserError("input_len, output_len and concurrency must be at least 1")
    if request_capacity(engine, input_len, output_len) < 1:
        raise UserError(f"{engine.model.name} on {engine.tp * engine.pp} x {engine.gpu.name}: the KV cache holds no "
                        f"request of {input_len + output_len} tokens")
    total = num_prompts or concurrency
    unsent = total - min(concurrency, total)
    waiting: list[_Cohort] = [_Cohort(min(concurrency, total), 0.0, input_len)]
    running: list[_Cohort] = []
    ttfts: list[tuple[float, int]] = []
    tpots: list[tuple[float, int]] = []
    now, finished, busy = 0.0, 0, 0.0
    delay = constants.request_overhead_s
    waste = engine.block_size / 2

    used = [0.0]  # KV tokens held, with what this step writes (kept up to date within a step)

    def held() -> float:
        return used[0]

    preempted = [False]

    def preempt_for(need: float, keep: _Cohort) -> bool:
        """Free `need` KV tokens by preempting from the end of `running` (never `keep`); False if impossible."""
        while held() + need > engine.kv_cache_tokens:
            preempted[0] = True
            victims = [c for c in running if c is not keep] or ([keep] if keep.count > 1 else [])
            if not victims:
                return False
            victim = victims[-1]
            per = victim.ctx + waste
            excess = held() + need - engine.kv_cache_tokens
            k = min(victim.count - (victim is keep), max(1, math.ceil(excess / per)))
            used[0] -= k * per
            back = victim.part(k)
            back.prompt_left, back.ctx = input_len + back.generated, 0
            victim.count -= k
            if not victim.count:
                running.remove(victim)
            waiting.insert(0, back)
        return True

    while finished < total:
        budget = engine.max_num_batched_tokens
        preempted[0] = False
        used[0] = sum(c.count * (c.ctx + waste) for c in running)
        decode, prefill = [], []  # (cohort, tokens per request)
        for c in list(running):
            if c not in running:
                continue  # preempted by one before it
            if c.prompt_left == 0:
                if budget < c.count or not preempt_for(c.count, c):
                    continue
                decode.append(c)
                used[0] += c.count
                budget -= c.count
            elif budget > 0:
                chunk = min(c.prompt_left, budget)
                if c.count > 1 and chunk < c.prompt_left:
                    rest = c.part(c.count - 1)
                    c.count = 1
                    running.insert(running.index(c) + 1, rest)
                full = min(c.count, budget // chunk)
                if full < c.count:
                    running.insert(running.index(c) + 1, c.part(c.count - full))
                    c.count = full
                if not preempt_for(c.count * chunk, c):
                    continue
                prefill.append((c, chunk))
                used[0] += c.count * chunk
                budget -= c.count * chunk
        room = engine.max_num_seqs - sum(c.count for c in running)
        # vLLM admits no waiting request in a step that preempted one
        while not preempted[0] and waiting and room > 0 and budget > 0 and waiting[0].sent + delay <= now + 1e-12:
            head = waiting[0]
            chunk = min(head.prompt_left, budget)
            free = engine.kv_cache_tokens - held()
            fits = int(free // (chunk + waste))
            take = min(head.count, room, max(1, budget // chunk) if chunk == head.prompt_left else 1, fits)
            if take < 1:
                break
            c = head.part(take)
            head.count -= take
            if not head.count:
                waiting.pop(0)
            running.append(c)
            prefill.append((c, chunk))
            used[0] += take * (chunk + waste)
            budget -= take * chunk
            room -= take
        if not decode and not prefill:  # idle until the next request reaches the engine
            if not waiting or waiting[0].sent + delay <= now:
                raise RuntimeError(f"closed_loop: no progress at {now:.3f} s ({len(running)} running cohorts)")
            now = waiting[0].sent + delay
            continue
        n_dec = sum(c.count for c in decode)
        if not prefill and not (waiting and room > 0):
            # pure decode until the next cohort finishes or the cache runs out: closed-form sum
            steps = min(output_len - c.generated for c in decode)
            free = engine.kv_cache_tokens - held()
            steps = max(1, min(steps, int(free // max(1, n_dec))))
        elif not prefill:
            arrive = waiting[0].sent + delay
            first = step_seconds(engine, constants, decodes=n_dec,
                                 decode_context=sum(c.count * (c.ctx + 1) for c in decode))
            steps = max(1, min(min(output_len - c.generated for c in decode),
                               math.ceil(max(0.0, arrive - now) / max(first, 1e-9))))
        else:
            steps = 1
        ctx0 = sum(c.count * (c.ctx + 1) for c in decode)  # each decode attends to its new token too
        pref_tokens = sum(c.count * chunk for c, chunk in prefill)
        pref_ctx = sum(c.count * c.ctx for c, _ in prefill)
        pref_pairs = sum(c.count * chunk * (c.ctx + (chunk + 1) / 2) for c, chunk in prefill)
        completing = sum(c.count for c, chunk in prefill if chunk == c.prompt_left)
        first = step_seconds(engine, constants, decodes=n_dec, decode_context=ctx0, prefill_tokens=pref_tokens,
                             prefill_context=pref_ctx, prefill_pairs=pref_pairs, sampled=n_dec + completing)
        slope = step_seconds(engine, constants, decodes=n_dec, decode_context=ctx0 + n_dec) - \
            step_seconds(engine, constants, decodes=n_dec, decode_context=ctx0) if steps > 1 else 0.0
        span = steps * first + slope * steps * (steps - 1) / 2
        now += span
        busy += span * sum(c.count for c in running)
        for c in decode:
            c.ctx += steps
            c.generated += steps
        for c, chunk in prefill:
            c.ctx += chunk
            c.prompt_left -= chunk
            if c.prompt_left == 0:
                c.generated += 1
                if c.first_token < 0:
                    c.first_token = now
        for c in [c for c in running if c.prompt_left == 0 and c.generated >= output_len]:
            running.remove(c)
            finished += c.count
            ttfts.append((c.first_token - c.sent, c.count))
            tpots.append(((now - c.first_token) / max(1, output_len - 1), c.count))
            again = min(c.count, unsent)
            if again:
                unsent -= again
                waiting.append(_Cohort(again, now, input_len))
    ttft_list = [v for v, n in ttfts for _ in range(n)]
    tpot_list = [v for v, n in tpots for _ in range(n)]
    return Result(ttft_p50_s=percentile(ttft_list, 50), ttft_p90_s=percentile(ttft_list, 90),
                  tpot_p50_s=percentile(tpot_list, 50), output_tokens_per_s=total * output_len / now,
                  request_rate=total / now, duration_s=now, batch=busy / now)


def open_loop(engine: Engine, constants: Constants, *, rate: float, input_len: int, output_len: int) -> Result:
    """Poisson arrivals at `rate` requests/s on one engine (the approximation: the module's docstring)."""
    if rate <= 0:
        raise UserError("the request rate must be positive")
    capacity = request_capacity(engine, input_len, output_len)
    if capacity < 1:
        return Result(math.inf, math.inf, math.inf, 0.0, rate, binding="kv_memory")
    c = _cost(engine, constants)
    mean_ctx = input_len + output_len / 2
    # step = fixed + n (per_token + per_sampled + per_ctx mean_ctx) + p (per_token + per_ctx I/2 + per_pair I/2)
    decode_cost = c.per_token + c.per_sampled + c.per_ctx * mean_ctx
    prefill_cost = c.per_token + c.per_attn_pair * input_len / 2
    load = rate * (output_len * decode_cost + input_len * prefill_cost)
    fixed = c.fixed + c.expert_s  # MoE: a batch of any size touches nearly every expert
    if load >= 1:
        return Result(math.inf, math.inf, math.inf, 0.0, rate, binding="compute")
    tau = fixed / (1 - load)
    n = rate * output_len * tau
    p = rate * input_len * tau
    if n > capacity:
        limit = "max_num_seqs" if capacity == engine.max_num_seqs else "kv_memory"
        return Result(math.inf, math.inf, tau, 0.0, rate, binding=limit, batch=n)
    budget = engine.max_num_batched_tokens - n
    if budget <= 0 or p >= budget:
        return Result(math.inf, math.inf, tau, 0.0, rate, binding="max_num_batched_tokens", batch=n)
    chunk = min(input_len, budget)
    own_steps = math.ceil(input_len / budget)
    own_step = tau + max(0.0, chunk - p) * prefill_cost  # tau already holds the mean p prefill tokens
    service = own_steps * own_step
    rho = p / budget
    mean_wait = rho * service / (2 * (1 - rho))
    tail = (mean_wait / rho) * math.log(10 * rho) if rho > 0.1 else 0.0
    base = constants.request_overhead_s + service
    # the step in progress when the request arrives: none while the engine is idle (Poisson: no request in it)
    busy = 1 - math.exp(-rate * (service + output_len * tau))
    return Result(ttft_p50_s=base + busy * tau / 2 + _exp_tail_quantile(mean_wait, rho, 0.5),
                  ttft_p90_s=base + busy * 0.9 * tau + tail, tpot_p50_s=tau,
                  output_tokens_per_s=rate * output_len, request_rate=rate, batch=n,
                  details={"rho_prefill": rho, "load": load})


def _exp_tail_quantile(mean_wait: float, rho: float, q: float) -> float:
    """The q-quantile of W with P(W > t) = rho exp(-rho t / mean_wait)."""
    if rho <= 1 - q or mean_wait <= 0:
        return 0.0
    return (mean_wait / rho) * math.log(rho / (1 - q))
