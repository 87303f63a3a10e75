"""Search GPU type x tensor parallel size x max_num_seqs for the cheapest deployment that meets a service level.

For each GPU of data/gpus.yaml (or the ones asked for) and TP in TP_SIZES: the planner (kuberay_llm.plan.accounting)
says whether the weights fit and how many tokens the KV cache holds; for each max_num_seqs in MAX_NUM_SEQS the
performance model (kuberay_llm.plan.perf.open_loop, Ray Serve LLM's measured overhead added) gives the highest
request rate one replica sustains with TTFT p90 and TPOT p50 within the targets (bisection: both grow with the
rate). Replicas = ceil(rps / that rate); the best max_num_seqs of a (GPU, TP) is the one needing the fewest
replicas (then the most headroom). max_num_batched_tokens is vLLM's default for the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kuberay_llm.errors import UserError
from kuberay_llm.plan import perf
from kuberay_llm.plan.accounting import Plan, PlanInput, default_batch_limits, plan, validate_parallelism
from kuberay_llm.plan.catalog import Gpu, Model

TP_SIZES = (1, 2, 4, 8)
MAX_NUM_SEQS = (16, 32, 64, 128, 256)
GPU_MEMORY_UTILIZATION = 0.9
BISECTION_STEPS = 40


@dataclass(frozen=True)
class Targets:
    input_len: int
    output_len: int
    ttft_p90_s: float
    tpot_p50_s: float
    rps: float


@dataclass(frozen=True)
class ServeOverhead:
    ttft_s: float = 0.0
    tpot_factor: float = 1.0


@dataclass
class Candidate:
    gpu: Gpu
    tp: int
    max_num_seqs: int = 0
    max_num_batched_tokens: int = 0
    max_model_len: int = 0
    plan: Plan | None = None
    max_rate: float = 0.0          # requests/s one replica sustains within the targets
    replicas: int = 0
    predicted: perf.Result | None = None  # at rps / replicas per replica, Ray Serve's overhead included
    limited_by: str = ""           # what stops one replica at max_rate
    rejected: str = ""             # why no max_num_seqs meets the targets (empty: feasible)
    price: float | None = None     # USD per GPU-hour
    rps: float = 1.0               # the request rate asked for

    @property
    def gpus(self) -> int:
        return self.replicas * self.tp

    @property
    def cost_per_hour(self) -> float | None:
        return None if self.price is None else self.gpus * self.price

    @property
    def headroom(self) -> float:
        """Extra request rate the replicas take before a target is missed, as a fraction of the rps asked for."""
        return 0.0 if not self.replicas else self.max_rate * self.replicas / self.rps - 1


def max_model_len_for(model: Model, targets: Targets) -> int:
    need = targets.input_len + targets.output_len
    if need > model.max_position_embeddings:
        raise UserError(f"--input-len {targets.input_len} + --output-len {targets.output_len} = {need} tokens exceed "
                        f"{model.name}'s context of {model.max_position_embeddings:,} tokens: shorten them")
    length = 2048
    while length < need:
        length *= 2
    return min(length, model.max_position_embeddings)


def served(result: perf.Result, serve: ServeOverhead) -> perf.Result:
    """A standalone-vLLM prediction as Ray Serve LLM serves it."""
    return perf.Result(ttft_p50_s=result.ttft_p50_s + serve.ttft_s, ttft_p90_s=result.ttft_p90_s + serve.ttft_s,
                       tpot_p50_s=result.tpot_p50_s * serve.tpot_factor, output_tokens_per_s=result.output_tokens_per_s,
                       request_rate=result.request_rate, binding=result.binding, batch=result.batch,
                       details=result.details)


def _verdict(result: perf.Result, targets: Targets) -> str:
    """Empty when `result` meets the targets, else the constraint that binds."""
    if result.binding:
        return {"compute": "the GPU's compute (prefill + decode work exceeds one second per second)",
                "kv_memory": "KV cache memory", "max_num_seqs": "max_num_seqs",
                "max_num_batched_tokens": "max_num_batched_tokens (prefill budget)"}[result.binding]
    if result.tpot_p50_s > targets.tpot_p50_s:
        return f"TPOT p50 {result.tpot_p50_s * 1e3:.1f} ms > {targets.tpot_p50_s * 1e3:g} ms"
    if result.ttft_p90_s > targets.ttft_p90_s:
        return f"TTFT p90 {result.ttft_p90_s * 1e3:.0f} ms > {targets.ttft_p90_s * 1e3:g} ms"
    return ""


def _evaluate(engine: perf.Engine, constants: perf.Constants, serve: ServeOverhead, targets: Targets,
              rate: float) -> perf.Result:
    return served(perf.open_loop(engine, constants, rate=rate, input_len=targets.input_len,
                                 output_len=targets.output_len), serve)


def max_rate(engine: perf.Engine, constants: perf.Constants, serve: ServeOverhead, targets: Targets
             ) -> tuple[float, str]:
    """(highest rate within the targets, the constraint that binds above it); rate 0 when even an idle replica
    misses a target."""
    idle = _evaluate(engine, constants, serve, targets, 1e-9)
    why = _verdict(idle, targets)
    if why:
        return 0.0, why
    low, high = 0.0, 1.0
    while not _verdict(_evaluate(engine, constants, serve, targets, high), targets):
        low, high = high, high * 2
        if high > 1e6:
            return high, ""
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        if _verdict(_evaluate(engine, constants, serve, targets, mid), targets):
            high = mid
        else:
            low = mid
    return low, limiter(_verdict(_evaluate(engine, constants, serve, targets, high), targets))


def limiter(verdict: str) -> str:
    """The name of the constraint a verdict reports (`TPOT p50 31 ms > 30 ms` -> `TPOT p50 target`)."""
    for target in ("TPOT p50", "TTFT p90"):
        if verdict.startswith(target):
            return f"{target} target"
    return verdict


def evaluate_gpu_tp(model: Model, gpu: Gpu, tp: int, targets: Targets, constants: perf.Constants,
                    serve: ServeOverhead) -> Candidate:
    candidate = Candidate(gpu=gpu, tp=tp, rps=targets.rps)
    try:
        validate_parallelism(model, tp, 1)
    except UserError as err:
        candidate.rejected = str(err).split(": ", 1)[-1]
        return candidate
    length = max_model_len_for(model, targets)
    _, batched = default_batch_limits(gpu)
    best: Candidate | None = None
    reasons = []
    for seqs in MAX_NUM_SEQS:
        result = plan(PlanInput(model=model, gpu=gpu, tp=tp, max_model_len=length,
                                gpu_memory_utilization=GPU_MEMORY_UTILIZATION, max_num_seqs=seqs,
                                max_num_batched_tokens=batched))
        if not result.fits:
            stage = result.binding_stage
            candidate.rejected = (f"weights do not fit: {stage.weights_bytes / 2**30:.1f} GiB per GPU + overhead "
                                  f"exceed {GPU_MEMORY_UTILIZATION} x {gpu.total_gib} GiB")
            return candidate
        engine = perf.Engine(model=model, gpu=gpu, tp=tp, max_num_seqs=seqs, max_num_batched_tokens=batched,
                             kv_cache_tokens=result.kv_cache_tokens, block_size=result.block_size, max_model_len=length,
                             gpu_memory_utilization=GPU_MEMORY_UTILIZATION)
        if perf.request_capacity(engine, targets.input_len, targets.output_len) < 1:
            candidate.rejected = (f"KV cache memory: {result.kv_cache_tokens:,} tokens hold no request of "
                                  f"{targets.input_len + targets.output_len} tokens")
            return candidate
        rate, why = max_rate(engine, constants, serve, targets)
        if rate <= 0:
            reasons.append(why)
            continue
        option = Candidate(gpu=gpu, tp=tp, max_num_seqs=seqs, max_num_batched_tokens=batched, max_model_len=length,
                           plan=result, max_rate=rate, replicas=math.ceil(targets.rps / rate * (1 - 1e-9)),
                           limited_by=why, rps=targets.rps)
        if best is None or (option.replicas, -option.max_rate) < (best.replicas, -best.max_rate):
            best = option
    if best is None:
        candidate.rejected = reasons[0] + " with no load"
        return candidate
    best.predicted = _evaluate(perf.Engine(model=model, gpu=gpu, tp=tp, max_num_seqs=best.max_num_seqs,
                                           max_num_batched_tokens=batched, kv_cache_tokens=best.plan.kv_cache_tokens,
                                           block_size=best.plan.block_size, max_model_len=length),
                               constants, serve, targets, targets.rps / best.replicas)
    return best


def search(model: Model, targets: Targets, gpus: list[Gpu], prices: dict[str, float], constants: perf.Constants,
           serve: ServeOverhead) -> tuple[list[Candidate], list[Candidate]]:
    """(feasible, cheapest first; rejected, in catalog order). Without a price a candidate sorts after every
    priced one, by GPU count."""
    feasible, rejected = [], []
    for gpu in gpus:
        for tp in TP_SIZES:
            candidate = evaluate_gpu_tp(model, gpu, tp, targets, constants, serve)
            candidate.price = prices.get(gpu.name)
            (rejected if candidate.rejected else feasible).append(candidate)
    feasible.sort(key=lambda c: (c.cost_per_hour is None, c.cost_per_hour or 0.0, c.gpus, -c.headroom))
    return feasible, rejected
