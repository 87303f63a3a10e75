"""`kuberay-llm size`: GPU type, tensor parallelism, max_num_seqs and replicas for TTFT / TPOT targets at a
request rate, cheapest first, from the capacity planner and the fitted performance model (no vLLM, no torch)."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from pathlib import Path

from kuberay_llm.errors import UserError
from kuberay_llm.plan import coldstart, perf_fit
from kuberay_llm.plan.catalog import find_gpu, find_model, gpus
from kuberay_llm.size import emit
from kuberay_llm.size.search import Candidate, ServeOverhead, Targets, max_model_len_for, search

_SECONDS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Hugging Face id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--input-len", required=True, type=int, help="prompt tokens per request")
    parser.add_argument("--output-len", required=True, type=int, help="output tokens per request")
    parser.add_argument("--ttft-p90", required=True, help="time to first token, 90th percentile: seconds (1, 0.5s, 300ms)")
    parser.add_argument("--tpot-p50", required=True, help="time per output token, median: seconds (0.03, 30ms)")
    parser.add_argument("--rps", required=True, type=float, help="requests per second to serve (Poisson arrivals)")
    parser.add_argument("--gpu", action="append", default=[], metavar="GPU",
                        help="consider only this GPU type (repeat for several; default: every GPU of data/gpus.yaml)")
    parser.add_argument("--price", action="append", default=[], metavar="GPU=USD/h",
                        help="price of one GPU-hour, e.g. --price H100-80GB=3.10 (repeat; no defaults)")
    parser.add_argument("--emit", metavar="DIR", help="write an overlay on manifests/base for the cheapest configuration")
    parser.add_argument("--json", action="store_true", help="print JSON")


def seconds(flag: str, text: str) -> float:
    match = _SECONDS.match(str(text))
    value = float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0) if match else None
    if value is None or value <= 0 or not math.isfinite(value):
        raise UserError(f"{flag} {text!r}: give a positive duration in seconds, e.g. {flag} 0.5 or {flag} 500ms")
    return value


def parse_prices(values: list[str]) -> dict[str, float]:
    prices = {}
    for item in values:
        name, sep, amount = item.partition("=")
        try:
            price = float(amount) if sep else math.nan
        except ValueError:
            price = math.nan
        if not name or not math.isfinite(price) or price <= 0:
            raise UserError(f"--price {item!r}: give GPU=USD per GPU-hour, e.g. --price H100-80GB=3.10")
        try:
            prices[find_gpu(name).name] = price
        except UserError as err:
            raise UserError(f"--price {item!r}: {err}") from None
    return prices


def targets_from(args: argparse.Namespace) -> Targets:
    for flag, value in (("--input-len", args.input_len), ("--output-len", args.output_len)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be at least 1 token")
    if not (math.isfinite(args.rps) and args.rps > 0):
        raise UserError(f"--rps {args.rps:g}: must be a positive number of requests per second, e.g. --rps 20")
    return Targets(input_len=args.input_len, output_len=args.output_len,
                   ttft_p90_s=seconds("--ttft-p90", args.ttft_p90), tpot_p50_s=seconds("--tpot-p50", args.tpot_p50),
                   rps=args.rps)


def _gpus(names: list[str]):
    chosen = []
    for name in names:
        try:
            gpu = find_gpu(name)
        except UserError as err:
            raise UserError(f"--gpu {name}: {err}") from None
        if gpu not in chosen:
            chosen.append(gpu)
    return chosen or list(gpus().values())


def _ms(seconds_: float) -> str:
    return f"{seconds_ * 1e3:.0f}" if seconds_ >= 0.01 else f"{seconds_ * 1e3:.1f}"


def _row(c: Candidate) -> dict:
    p = c.predicted
    return {"gpu": c.gpu.name, "tensor_parallel_size": c.tp, "replicas": c.replicas, "gpus": c.gpus,
            "max_num_seqs": c.max_num_seqs, "max_num_batched_tokens": c.max_num_batched_tokens,
            "max_model_len": c.max_model_len, "usd_per_hour": c.cost_per_hour,
            "ttft_p50_s": round(p.ttft_p50_s, 4), "ttft_p90_s": round(p.ttft_p90_s, 4),
            "tpot_p50_s": round(p.tpot_p50_s, 5), "max_rps_per_replica": round(c.max_rate, 3),
            "headroom": round(c.headroom, 3), "limited_by": c.limited_by,
            "kv_cache_tokens": c.plan.kv_cache_tokens}


def text(model, targets: Targets, feasible: list[Candidate], rejected: list[Candidate], priced: bool,
         serve: ServeOverhead) -> str:
    lines = [f"{model.name}: {targets.rps:g} req/s of {targets.input_len} in / {targets.output_len} out tokens, "
             f"TTFT p90 <= {_ms(targets.ttft_p90_s)} ms, TPOT p50 <= {_ms(targets.tpot_p50_s)} ms",
             f"predicted by the performance model fitted in scripts/kuberay_llm/data/perf-fit.yaml (make bench-size: "
             f"its held-out errors), Ray Serve LLM adding {serve.ttft_s * 1e3:.0f} ms TTFT and x{serve.tpot_factor} "
             "TPOT; Poisson arrivals, PP 1"]
    if not priced:
        lines.append("prices unknown (pass --price GPU=USD/h): sorted by GPU count")
    if feasible:
        header = (f"{'GPU':<10} {'TP':>2} {'replicas':>8} {'GPUs':>4} {'max_num_seqs':>12} {'USD/h':>8} "
                  f"{'TTFT p50':>8} {'p90 ms':>6} {'TPOT p50 ms':>11} {'max req/s/replica':>17} {'headroom':>8}  limited by")
        lines += ["", header, "-" * len(header)]
        for c in feasible:
            p = c.predicted
            cost = f"{c.cost_per_hour:8.2f}" if c.cost_per_hour is not None else f"{'?':>8}"
            lines.append(f"{c.gpu.name:<10} {c.tp:>2} {c.replicas:>8} {c.gpus:>4} {c.max_num_seqs:>12} {cost} "
                         f"{_ms(p.ttft_p50_s):>8} {_ms(p.ttft_p90_s):>6} {_ms(p.tpot_p50_s):>11} "
                         f"{c.max_rate:>17.2f} {c.headroom:>+8.0%}  {c.limited_by}")
    else:
        lines += ["", "no configuration meets the targets"]
    if rejected:
        lines += ["", "rejected:"]
        lines += [f"  {c.gpu.name} TP {c.tp}: {c.rejected}" for c in rejected]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    model = find_model(args.model)
    targets = targets_from(args)
    max_model_len_for(model, targets)  # the context check, before any search
    prices = parse_prices(args.price)
    candidates_gpus = _gpus(args.gpu)
    fit = perf_fit.committed()
    serve = ServeOverhead(fit["ray_serve"]["ttft_s"], fit["ray_serve"]["tpot_factor"])
    feasible, rejected = search(model, targets, candidates_gpus, prices, perf_fit.constants(), serve)
    cold = None
    if feasible:
        best = feasible[0]
        cold = coldstart.predict(model, best.gpu, tp=best.tp, pp=1, model_source=emit.ungated_source(model), fit=fit)
    if args.json:
        print(json.dumps({"model": model.name, "targets": targets.__dict__, "prices_known": bool(prices),
                          "feasible": [_row(c) for c in feasible],
                          "rejected": [{"gpu": c.gpu.name, "tensor_parallel_size": c.tp, "why": c.rejected}
                                       for c in rejected],
                          "cold_start": cold.as_dict() if cold else None}, indent=2))
    else:
        print(text(model, targets, feasible, rejected, bool(prices), serve))
        if cold:
            print(f"\n{feasible[0].gpu.name} TP {feasible[0].tp}, " + "\n".join(cold.lines()))
    if args.emit:
        if not feasible:
            raise UserError(f"--emit {args.emit}: no configuration meets the targets, nothing to write; relax "
                            "--ttft-p90 / --tpot-p50 or allow more GPU types")
        out_dir = Path(args.emit)
        command = "kuberay-llm size " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["size"] \
            else "kuberay-llm size"
        emit.write(out_dir, emit.files(model, feasible[0], targets, cold, command, out_dir))
        print(f"\nwrote {out_dir}/ (kuberay-llm validate {out_dir}; kuberay-llm plan {out_dir})",
              file=sys.stderr if args.json else sys.stdout)
    return 0 if feasible else 1
