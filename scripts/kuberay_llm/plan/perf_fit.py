"""Fit the performance model's constants on named measured points, and report its errors on all the others.

The split (FIT_RULE, the same for every GPU and model): for each measured file and model, the shape 512x256 (or
the file's first shape when it has no 512x256) at its lowest and its highest concurrency are fit points; every
other point is held out. The constants (kuberay_llm.plan.perf.Constants) minimise the sum of squared log errors
of output tokens/s, TPOT p50, TTFT p50 and TTFT p90 over the fit points only (Nelder-Mead, deterministic start).

`python -m kuberay_llm.plan.perf_fit --write` refits and writes kuberay_llm/data/perf-fit.yaml (the constants,
the fit points by label, the Ray Serve overhead); tests/test_perf_fit.py fails when that file is not what a
refit gives. `make bench-size` (`python -m kuberay_llm.plan.perf_fit`) prints every point's errors, held-out
maxima and medians against the goals, and the cold-start estimate against every measured start.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
from pathlib import Path

import yaml

from kuberay_llm.plan import perf, perf_data
from kuberay_llm.plan.catalog import DATA_DIR, find_gpu, find_model

FIT_FILE = DATA_DIR / "perf-fit.yaml"
FIT_RULE = ("per measured file and model: shape 512x256 (else the file's first shape) at its lowest and highest "
            "concurrency; every other point is held out")
CANONICAL_SHAPE = "512x256"
GOALS = {"output_tokens_per_s": 0.15, "tpot_p50_s": 0.15, "ttft_p50_s": 0.25, "ttft_p90_s": 0.25}
METRICS = tuple(GOALS)
PARAMS = ("compute_efficiency", "bandwidth_efficiency", "step_overhead_s", "request_overhead_s")
START = (0.6, 0.8, 1e-3, 1e-2)
SIGNIFICANT = 3  # digits the data file keeps


def fit_labels(points: list[perf_data.Point]) -> list[str]:
    groups: dict[tuple[str, str], list[perf_data.Point]] = {}
    for p in points:
        groups.setdefault((p.source, p.model), []).append(p)
    labels = []
    for group in groups.values():
        shapes = [p.shape for p in group]
        shape = CANONICAL_SHAPE if CANONICAL_SHAPE in shapes else shapes[0]
        levels = [p for p in group if p.shape == shape]
        low = min(levels, key=lambda p: p.concurrency)
        high = max(levels, key=lambda p: p.concurrency)
        labels += [low.label] + ([high.label] if high is not low else [])
    return labels


def engine_for(point: perf_data.Point) -> perf.Engine:
    engine = perf.Engine(model=find_model(point.model), gpu=find_gpu(point.gpu), tp=point.tensor_parallel_size,
                         max_num_seqs=point.max_num_seqs, max_num_batched_tokens=point.max_num_batched_tokens,
                         kv_cache_tokens=point.kv_cache_tokens, max_model_len=point.max_model_len,
                         gpu_memory_utilization=point.gpu_memory_utilization)
    return engine if point.kv_cache_tokens else engine.with_kv_from_planner()


def predict(point: perf_data.Point, constants: perf.Constants) -> perf.Result:
    return perf.closed_loop(engine_for(point), constants, concurrency=point.concurrency, input_len=point.input_len,
                            output_len=point.output_len, num_prompts=point.num_prompts)


def errors(point: perf_data.Point, result: perf.Result) -> dict[str, float]:
    """predicted / measured - 1 per metric the point has."""
    out = {}
    for metric in METRICS:
        measured = getattr(point, metric)
        if measured:
            out[metric] = getattr(result, metric) / measured - 1
    return out


def _loss(vector: list[float], points: list[perf_data.Point]) -> float:
    if any(v <= 0 for v in vector) or vector[0] > 1 or vector[1] > 1:
        return math.inf
    constants = perf.Constants(*vector)
    total = 0.0
    for p in points:
        result = predict(p, constants)
        total += sum(math.log1p(e) ** 2 for e in errors(p, result).values())
    return total


def nelder_mead(f, start: list[float], steps: list[float], iterations: int = 600, tol: float = 1e-12) -> list[float]:
    """The textbook simplex method (reflection 1, expansion 2, contraction 0.5, shrink 0.5)."""
    simplex = [list(start)] + [[x + (s if i == j else 0) for j, x in enumerate(start)] for i, s in enumerate(steps)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = sorted(range(len(simplex)), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) <= tol * (abs(values[0]) + tol):
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / (len(simplex) - 1) for j in range(len(start))]
        worst = simplex[-1]
        reflect = [c + (c - w) for c, w in zip(centroid, worst)]
        fr = f(reflect)
        if fr < values[0]:
            expand = [c + 2 * (c - w) for c, w in zip(centroid, worst)]
            fe = f(expand)
            simplex[-1], values[-1] = (expand, fe) if fe < fr else (reflect, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflect, fr
        else:
            contract = [c + 0.5 * (w - c) for c, w in zip(centroid, worst)]
            fc = f(contract)
            if fc < values[-1]:
                simplex[-1], values[-1] = contract, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, s)] for s in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(len(simplex)), key=values.__getitem__)]


def rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")


def fit(points: list[perf_data.Point]) -> perf.Constants:
    """Least squares (of log errors) over `points`, rounded as the data file keeps them."""
    # the overheads are searched in log space: they span orders of magnitude
    def f(v):
        return _loss([v[0], v[1], math.exp(v[2]), math.exp(v[3])], points)
    start = [START[0], START[1], math.log(START[2]), math.log(START[3])]
    best = nelder_mead(f, start, [0.1, 0.1, 0.5, 0.5])
    best = nelder_mead(f, best, [0.02, 0.02, 0.1, 0.1])  # restart: the simplex may have collapsed early
    return perf.Constants(*(rounded(x) for x in (best[0], best[1], math.exp(best[2]), math.exp(best[3]))))


def serve_overhead(pairs: list[perf_data.ServePair]) -> dict[str, float]:
    """Ray Serve LLM beside standalone vLLM: the median TTFT added at concurrency 1 and the median TPOT ratio at
    each run's highest concurrency."""
    if not pairs:
        return {"ttft_s": 0.0, "tpot_factor": 1.0, "pairs": 0}
    top = {}
    for p in pairs:
        run = p.label.rsplit(":", 1)[0]
        if run not in top or p.concurrency > top[run].concurrency:
            top[run] = p
    return {"ttft_s": rounded(statistics.median(p.serve_ttft_p50_s - p.vllm_ttft_p50_s
                                                for p in pairs if p.concurrency == 1)),
            "tpot_factor": rounded(statistics.median(p.serve_tpot_p50_s / p.vllm_tpot_p50_s for p in top.values())),
            "pairs": len(pairs)}


@functools.cache
def refit(results_dir: Path = perf_data.RESULTS_DIR) -> dict:
    """What perf-fit.yaml should hold for the measured files under `results_dir` (once per process: the
    measured files do not change while it runs)."""
    from kuberay_llm.plan import coldstart

    points, starts = perf_data.load(results_dir)
    labels = fit_labels(points)
    constants = fit([p for p in points if p.label in labels])
    return {"fit_rule": FIT_RULE, "fit_points": labels,
            "constants": {name: getattr(constants, name) for name in PARAMS},
            "ray_serve": serve_overhead(perf_data.serve_pairs(results_dir)),
            "cold_start": coldstart.fit_cold_start(starts),
            "sources": sorted({p.source for p in points})}


@functools.cache
def committed() -> dict:
    return yaml.safe_load(FIT_FILE.read_text())


def constants() -> perf.Constants:
    """The committed constants (what `kuberay-llm size` predicts with)."""
    return perf.Constants(**committed()["constants"])


def write(doc: dict, path: Path = FIT_FILE) -> None:
    header = ("# The performance model's fitted constants (kuberay_llm.plan.perf): generated by\n"
              "# `python -m kuberay_llm.plan.perf_fit --write` from bench/gpu/results/ (sources); do not edit by hand.\n"
              "# fit_points are the only points the constants were fitted on; `make bench-size` reports every other\n"
              "# point as held out. ray_serve: Ray Serve LLM's median TTFT added at concurrency 1 and TPOT ratio at the\n"
              "# highest concurrency, beside standalone vLLM on the same engine and load. cold_start: the measured terms of\n"
              "# kuberay_llm.plan.coldstart (engine start-up per GPU, Ray + KubeRay + Serve, dummy-weight loading).\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120))


def _pct(value: float | None) -> str:
    return "    -" if value is None else f"{value:+6.1%}"


def report(results_dir: Path = perf_data.RESULTS_DIR, out=sys.stdout) -> int:
    """The bench-size report. Exit status 1 when perf-fit.yaml is not what a refit gives; a goal the held-out
    errors or the cold start miss is printed as NOT MET (the measurements are what they are) without failing."""
    points, starts = perf_data.load(results_dir)
    doc = committed()
    fitted = set(doc["fit_points"])
    c = constants()
    print(f"Performance model vs `vllm bench serve` (standalone vLLM; {', '.join(sorted({p.source for p in points}))})",
          file=out)
    print("constants: " + ", ".join(f"{k} {v}" for k, v in doc["constants"].items()), file=out)
    print(f"fit points: {FIT_RULE}", file=out)
    header = (f"{'point':<58} {'role':<8} {'tok/s':>7} {'pred':>7} {'err':>6}  {'TPOT ms':>7} {'pred':>6} {'err':>6}  "
              f"{'TTFT p50':>8} {'pred':>6} {'err':>6}  {'TTFT p90':>8} {'pred':>6} {'err':>6}")
    print(header, file=out)
    print("-" * len(header), file=out)
    held: dict[str, list[tuple[float, str]]] = {m: [] for m in METRICS}
    for p in points:
        role = "fit" if p.label in fitted else "held-out"
        r = predict(p, c)
        e = errors(p, r)
        if role == "held-out":
            for metric, value in e.items():
                held[metric].append((abs(value), p.label))
        p90 = f"{p.ttft_p90_s * 1e3:8.0f}" if p.ttft_p90_s else f"{'-':>8}"
        print(f"{p.label:<58} {role:<8} {p.output_tokens_per_s:7.0f} {r.output_tokens_per_s:7.0f} "
              f"{_pct(e.get('output_tokens_per_s'))}  {p.tpot_p50_s * 1e3:7.2f} {r.tpot_p50_s * 1e3:6.2f} "
              f"{_pct(e.get('tpot_p50_s'))}  {p.ttft_p50_s * 1e3:8.0f} {r.ttft_p50_s * 1e3:6.0f} "
              f"{_pct(e.get('ttft_p50_s'))}  {p90} {r.ttft_p90_s * 1e3:6.0f} {_pct(e.get('ttft_p90_s'))}", file=out)
    goals_met = True
    print(file=out)
    print("held-out errors (|predicted / measured - 1|):", file=out)
    for metric in METRICS:
        values = held[metric]
        if not values:
            print(f"  {metric:<20} no held-out point", file=out)
            continue
        worst, where = max(values)
        median = statistics.median(v for v, _ in values)
        met = worst <= GOALS[metric]
        goals_met &= met
        print(f"  {metric:<20} max {worst:6.1%} ({where}), median {median:6.1%} over {len(values)} points; goal "
              f"<= {GOALS[metric]:.0%}: {'met' if met else 'NOT MET'}", file=out)
    serve = doc["ray_serve"]
    print(f"Ray Serve LLM beside standalone vLLM ({serve['pairs']} pairs): TTFT +{serve['ttft_s'] * 1e3:.0f} ms at "
          f"concurrency 1, TPOT x{serve['tpot_factor']} at the highest concurrency (`kuberay-llm size` adds both)",
          file=out)
    current = refit(results_dir)
    ok = current == doc
    if not ok:
        print("FAILED: scripts/kuberay_llm/data/perf-fit.yaml is not what the measured files give: run "
              "`python -m kuberay_llm.plan.perf_fit --write`", file=out)
    from kuberay_llm.plan import coldstart
    print(file=out)
    goals_met &= coldstart.report_measured(starts, out=out)
    print(f"\n{'every goal met' if goals_met else 'some goals NOT MET (above)'}; the fit is "
          f"{'current' if ok else 'STALE'}", file=out)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kuberay_llm.plan.perf_fit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="refit and write kuberay_llm/data/perf-fit.yaml")
    args = parser.parse_args(argv)
    if args.write:
        doc = refit()
        write(doc)
        print(f"wrote {FIT_FILE}: {doc['constants']}")
        return 0
    return report()


if __name__ == "__main__":
    sys.exit(main())
