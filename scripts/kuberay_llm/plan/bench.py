"""Predicted vs published: the "Maximum concurrency for N tokens per request" figures of Ray's tutorials.

vLLM before 0.11 computed that log line per worker before taking the minimum over workers, so with
pipeline parallelism the line a user sees first is the first worker's: stage 0. The comparison uses the
stage vLLM logged (`logged_stage`) and also prints the minimum over stages (what the scheduler gets).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kuberay_llm.plan.accounting import Plan, PlanInput, plan
from kuberay_llm.plan.catalog import find_gpu, find_model

TOLERANCE = 0.05  # the planner promises 5%; it aims at 3%


@dataclass(frozen=True)
class Published:
    what: str
    model: str
    gpu: str
    tp: int
    pp: int
    gpu_memory_utilization: float
    max_model_len: int
    concurrency: float
    max_num_seqs: int | None = None
    logged_stage: int = 0
    where: str = ""


PUBLISHED = [
    Published("DeepSeek-R1, 2 x 8 H100, TP 8 x PP 2", "deepseek-ai/DeepSeek-R1", "H100-80GB", 8, 2, 0.92, 32768,
              29.06, max_num_seqs=40, where="Ray Serve LLM tutorial 'Deploy a large-sized LLM' (vLLM log)"),
    Published("DeepSeek-R1, 2 x 8 H100, TP 8 x PP 2", "deepseek-ai/DeepSeek-R1", "H100-80GB", 8, 2, 0.92, 16384,
              58.0, max_num_seqs=40, where="same tutorial, 'concurrency ~ 58'"),
    Published("Llama-3.1-70B, 8 x A100-40G, TP 8", "meta-llama/Llama-3.1-70B-Instruct", "A100-40GB", 8, 1, 0.9,
              32768, 13.02, where="Ray Serve LLM tutorial 'Deploying a medium-sized LLM' (vLLM log)"),
    Published("Llama-3.1-70B, 8 x A100-40G, TP 8", "meta-llama/Llama-3.1-70B-Instruct", "A100-40GB", 8, 1, 0.9,
              16384, 26.0, where="same tutorial, 'concurrency ~ 26'"),
]


def predict(figure: Published) -> Plan:
    return plan(PlanInput(model=find_model(figure.model), gpu=find_gpu(figure.gpu), tp=figure.tp, pp=figure.pp,
                          max_model_len=figure.max_model_len, gpu_memory_utilization=figure.gpu_memory_utilization,
                          max_num_seqs=figure.max_num_seqs))


def residual(figure: Published, result: Plan) -> float:
    return result.stages[figure.logged_stage].max_concurrency / figure.concurrency - 1


def main() -> int:
    header = f"{'figure':<40} {'tokens':>7} {'published':>9} {'predicted':>9} {'residual':>8} {'min stages':>10}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for figure in PUBLISHED:
        result = predict(figure)
        r = residual(figure, result)
        worst = max(worst, abs(r))
        print(f"{figure.what:<40} {figure.max_model_len:>7,} {figure.concurrency:>8.2f}x "
              f"{result.stages[figure.logged_stage].max_concurrency:>8.2f}x {r:>+7.1%} {result.max_concurrency:>9.2f}x")
    verdict = "ok" if worst <= TOLERANCE else "FAILED"
    print(f"worst residual {worst:.1%} (tolerance {TOLERANCE:.0%}): {verdict}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
