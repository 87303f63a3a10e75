"""The planner against measured ground truth: every point of the measured data (vLLM's own start-up log on a
real GPU, scripts/kuberay_llm/data/measured-*.yaml), fitted points and held-out points reported apart; then,
as a secondary comparison, the concurrency figures Ray's tutorials published, each with the settings it is
known to have used and its unknown settings named.

The residual is predicted / measured - 1 of "Maximum concurrency for max_model_len tokens per request" (KV
cache tokens / max_model_len). Exit status 1 when a held-out point is off by more than HELD_OUT_TOLERANCE or the
fitted constants in overhead.py are not what their fit points give.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from kuberay_llm.plan import overhead
from kuberay_llm.plan.accounting import Plan, PlanInput, plan
from kuberay_llm.plan.catalog import DATA_DIR, find_gpu, find_model
from kuberay_llm.plan.weights import stage_weight_bytes

HELD_OUT_TOLERANCE = 0.03  # the planner's goal on points it was not fitted on
GiB = 1024**3


@functools.cache
def measured_points() -> tuple[dict, ...]:
    points = []
    for path in sorted(Path(DATA_DIR).glob("measured-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        points += [dict(p, source=path.name, vllm=doc["provenance"]["software"]["vllm"]) for p in doc["points"]]
    return tuple(points)


def is_fit_point(point: dict) -> bool:
    return point["label"] in overhead.FIT_POINTS


def plan_for(point: dict) -> Plan:
    s = point["settings"]
    return plan(PlanInput(model=find_model(point["model"]), gpu=find_gpu(point["gpu"]), vllm_version=point["vllm"],
                          tp=point["tensor_parallel_size"], pp=point["pipeline_parallel_size"],
                          max_model_len=s["max_model_len"], gpu_memory_utilization=s["gpu_memory_utilization"],
                          max_num_seqs=s["max_num_seqs"], max_num_batched_tokens=s["max_num_batched_tokens"]))


def point_residual(point: dict) -> float:
    return plan_for(point).max_concurrency / point["measured"]["max_concurrency"] - 1


def weights_residual(point: dict) -> float:
    model = find_model(point["model"])
    predicted = stage_weight_bytes(model, point["tensor_parallel_size"], point["pipeline_parallel_size"])[0]
    return predicted / (point["measured"]["weights_gib"] * GiB) - 1


def constant_drift() -> list[str]:
    """Fitted constants whose literal in overhead.py is not what FIT_POINTS give (rounded as written)."""
    fit = [p for p in measured_points() if is_fit_point(p)]
    fitted = overhead.fit_constants(fit, {p["model"]: find_model(p["model"]) for p in fit})
    literal = overhead.constants()
    return [f"overhead.{name} is {overhead.rounded_gib(literal[name])} GiB but FIT_POINTS give "
            f"{overhead.rounded_gib(value)} GiB"
            for name, value in fitted.items() if overhead.rounded_gib(value) != overhead.rounded_gib(literal[name])]


@dataclass(frozen=True)
class Published:
    """A concurrency figure from a tutorial's vLLM log. `unknown` names the settings the tutorial does not state;
    the prediction takes the deployed vLLM's defaults for them (DEFAULT_GPU_MEMORY_UTILIZATION, the GPU's
    max_num_seqs, overhead.DEPLOYED_VLLM_VERSION's model runner)."""

    what: str
    model: str
    gpu: str
    tp: int
    pp: int
    max_model_len: int
    concurrency: float
    unknown: tuple[str, ...]
    where: str
    gpu_memory_utilization: float | None = None
    logged_stage: int = 0  # vLLM before 0.11 logged worker 0's figure, not the minimum over stages


PUBLISHED = [
    Published("DeepSeek-R1, 2 x 8 H100, TP 8 x PP 2", "deepseek-ai/DeepSeek-R1", "H100-80GB", 8, 2, 32768, 29.06,
              unknown=("vLLM version", "gpu_memory_utilization", "max_num_seqs"),
              where="Ray Serve LLM tutorial 'Deploy a large-sized LLM' (vLLM log line)"),
    Published("Llama-3.1-70B, 8 x A100-40G, TP 8", "meta-llama/Llama-3.1-70B-Instruct", "A100-40GB", 8, 1, 32768,
              13.02, unknown=("vLLM version", "max_num_seqs"), gpu_memory_utilization=0.9,
              where="Ray Serve LLM tutorial 'Deploying a medium-sized LLM' (vLLM log line)"),
]


def predict(figure: Published) -> Plan:
    kwargs = {} if figure.gpu_memory_utilization is None else {"gpu_memory_utilization": figure.gpu_memory_utilization}
    return plan(PlanInput(model=find_model(figure.model), gpu=find_gpu(figure.gpu), tp=figure.tp, pp=figure.pp,
                          max_model_len=figure.max_model_len, **kwargs))


def residual(figure: Published, result: Plan) -> float:
    return result.stages[figure.logged_stage].max_concurrency / figure.concurrency - 1


def main() -> int:
    points = measured_points()
    header = (f"{'point':<5} {'role':<8} {'model':<38} {'len':>7} {'seqs':>5} {'tokens':>6} {'util':>5} "
              f"{'measured':>9} {'predicted':>9} {'residual':>8} {'weights':>7}")
    print("Planner vs vLLM's own start-up accounting (" + ", ".join(sorted({p['source'] for p in points})) + ")")
    print(header)
    print("-" * len(header))
    worst = {"fit": 0.0, "held-out": 0.0}
    count = {"fit": 0, "held-out": 0}
    for point in points:
        role = "fit" if is_fit_point(point) else "held-out"
        s, r = point["settings"], point_residual(point)
        worst[role] = max(worst[role], abs(r))
        count[role] += 1
        print(f"{point['label']:<5} {role:<8} {point['model']:<38} {s['max_model_len']:>7,} {s['max_num_seqs']:>5} "
              f"{s['max_num_batched_tokens']:>6} {s['gpu_memory_utilization']:>5} "
              f"{point['measured']['max_concurrency']:>8.2f}x {plan_for(point).max_concurrency:>8.2f}x {r:>+7.1%} "
              f"{weights_residual(point):>+6.1%}")
    print(f"fit points ({', '.join(overhead.FIT_POINTS)}): worst residual {worst['fit']:.1%} over {count['fit']}")
    print(f"held-out points: worst residual {worst['held-out']:.1%} over {count['held-out']} "
          f"(goal {HELD_OUT_TOLERANCE:.0%})")
    drift = constant_drift()
    for line in drift:
        print(f"FAILED: {line}")
    print()
    print(f"Secondary: figures Ray's tutorials published (settings they do not state take the defaults of vLLM "
          f"{overhead.DEPLOYED_VLLM_VERSION}, the version the tiers deploy)")
    for figure in PUBLISHED:
        result = predict(figure)
        print(f"  {figure.what}: published {figure.concurrency:.2f}x at {figure.max_model_len:,} tokens, predicted "
              f"{result.stages[figure.logged_stage].max_concurrency:.2f}x (stage {figure.logged_stage}; minimum "
              f"over stages {result.max_concurrency:.2f}x), {residual(figure, result):+.1%}; unknown: "
              f"{', '.join(figure.unknown)} [{figure.where}]")
    print()
    all_worst = max(worst.values())
    print(f"worst residual {all_worst:.1%} over {len(points)} measured points")
    return 0 if worst["held-out"] <= HELD_OUT_TOLERANCE and not drift else 1


if __name__ == "__main__":
    sys.exit(main())
