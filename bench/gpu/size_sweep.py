#!/usr/bin/env python3
"""Ground truth for `kuberay-llm size`: `vllm bench serve` sweeps of standalone vLLM on this machine's GPU, per
model, over input/output shapes and concurrency from 1 to saturation.

For each model: `vllm serve DIR --load-format dummy` (the model's published config.json and an offline tokenizer,
random weights: real memory and speed, noise as text) with fixed engine settings (ENGINE below, recorded with
every point), then for each shape one `kuberay-llm bench`-style sweep (kuberay_llm.loadgen.sweep: random prompts
of exactly the input length, --ignore-eos so every request yields exactly the output length). The engine's own
start-up lines (weights, KV cache tokens, CUDA graphs) are parsed from its log.

usage: python3 bench/gpu/size_sweep.py --out DIR [--models llama8b,qwen32b] [--shapes 2048x128,512x256,128x512]
                                       [--concurrency 1,8,32,128,256] [--budget SECONDS]
       python3 bench/gpu/size_sweep.py --report DIR/size-sweep.jsonl OUT.json   (the data file of bench/gpu/results)
Writes one JSON row per (model, shape) to DIR/size-sweep.jsonl as it goes, so a run cut short keeps what it
measured. A model's levels stop at the budget: a level that cannot finish before it is skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import make_models  # noqa: E402
import vllm_log  # noqa: E402
from machine import environment, wait_gpu_free  # noqa: E402
from throughput import engine_flags, stop_server, wait_ready  # noqa: E402

PORT = 8000
# The engine settings of every point. max_num_seqs / max_num_batched_tokens are the batching limits the
# performance model takes as inputs; max_model_len covers the longest shape.
ENGINE = {"max_model_len": 8192, "max_num_seqs": 256, "max_num_batched_tokens": 8192,
          "gpu_memory_utilization": 0.9, "load_format": "dummy"}
T0 = time.time()


def log(*a):
    print(f"[size-sweep {time.strftime('%H:%M:%S')} +{time.time() - T0:.0f}s]", *a, flush=True)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        i, _, o = part.partition("x")
        if not (i.isdigit() and o.isdigit()):
            raise SystemExit(f"--shapes {part!r}: give INPUTxOUTPUT token counts, e.g. 2048x128")
        shapes.append((int(i), int(o)))
    return shapes


def prompts(concurrency: int) -> int:
    """Requests per level: two rounds of the concurrency (at least 4), so the level reaches its steady state."""
    return max(4, 2 * concurrency)


def level_seconds(row_levels: list[dict], concurrency: int) -> float:
    """A guess at the next level's duration from the last one's (requests scale with concurrency, throughput
    at most with it): used only to skip a level that would run past the budget."""
    if not row_levels:
        return 30.0
    last = row_levels[-1]
    return float(last.get("duration", 30.0)) * prompts(concurrency) / prompts(last["concurrency"]) * 0.8


def run_model(name: str, shapes, concurrency, out: str, deadline: float, env_info: dict) -> None:
    from kuberay_llm.loadgen import sweep

    models = os.path.join(out, "models")
    model_dir = os.path.join(models, name)
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_models.py"), models, name], check=True, timeout=600)
    hub_id = make_models.CONFIGS[name]["hub_id"]
    cmd = ["vllm", "serve", model_dir, "--served-model-name", hub_id, "--host", "127.0.0.1", "--port", str(PORT),
           *engine_flags(ENGINE)]
    logf = os.path.join(out, f"vllm-{name}.log")
    log("start:", " ".join(cmd))
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=open(logf, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    startup = wait_ready(f"http://127.0.0.1:{PORT}", hub_id, t0, min(t0 + 480, deadline - 60), proc)
    log(f"{name} ready after {startup} s")
    base = {"model": hub_id, "engine": ENGINE, "tensor_parallel_size": 1, "command": " ".join(cmd),
            "startup_s": startup, "environment": env_info}
    try:
        for input_len, output_len in shapes if startup else []:
            row = {**base, "input_len": input_len, "output_len": output_len, "levels": [], "skipped": []}
            for c in concurrency:
                left = deadline - time.time()
                if left < level_seconds(row["levels"], c) + 20:
                    row["skipped"].append({"concurrency": c, "why": f"budget: {left:.0f} s left"})
                    continue
                spec = sweep.SweepSpec(base_url=f"http://127.0.0.1:{PORT}", model=hub_id, tokenizer=model_dir,
                                       concurrency=[c], input_len=input_len, output_len=output_len,
                                       prompts_per_level=2, min_prompts=4, warmups=min(c, 8),
                                       timeout_s=max(30.0, left - 15))
                try:
                    levels = sweep.run(spec, log=log)["levels"]
                except Exception as e:  # noqa: BLE001 - keep the shape's other levels
                    row["skipped"].append({"concurrency": c, "why": str(e)[-600:]})
                    continue
                row["levels"] += levels
                lv = levels[0]
                log(f"{name} {input_len}x{output_len} c={c}: {lv.get('output_throughput', 0):.0f} out tok/s, "
                    f"ttft p50 {lv.get('median_ttft_ms', 0):.0f} p90 {lv.get('p90_ttft_ms', 0):.0f} ms, "
                    f"tpot p50 {lv.get('median_tpot_ms', 0):.1f} ms, {lv.get('duration', 0):.0f} s")
            with open(os.path.join(out, "size-sweep.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")
    finally:
        stop_server(proc)
        text = open(logf, errors="replace").read()
        with open(os.path.join(out, "size-sweep.jsonl"), "a") as f:
            f.write(json.dumps({**base, "kind": "engine", "vllm": vllm_log.parse(text),
                                "vllm_log_lines": vllm_log.key_lines(text)[-40:],
                                **({} if startup else {"log_tail": text.splitlines()[-40:]})}) + "\n")
        wait_gpu_free()


def report(rows_path: str, out_path: str) -> dict:
    """size-sweep.jsonl -> one data file: provenance, each model's engine facts, every measured point."""
    rows = [json.loads(line) for line in open(rows_path)]
    engines = {r["model"]: r for r in rows if r.get("kind") == "engine"}
    points = []
    for r in rows:
        if r.get("kind") == "engine":
            continue
        for lv in r["levels"]:
            points.append({"model": r["model"], "input_len": r["input_len"], "output_len": r["output_len"],
                           "concurrency": lv["concurrency"], "num_prompts": lv.get("completed"),
                           **{k: lv[k] for k in ("duration", "request_throughput", "output_throughput",
                                                 "total_token_throughput", "median_ttft_ms", "p90_ttft_ms",
                                                 "p99_ttft_ms", "mean_ttft_ms", "median_tpot_ms", "p90_tpot_ms",
                                                 "p99_tpot_ms", "mean_tpot_ms", "median_itl_ms", "failed")
                              if k in lv},
                           "command": lv.get("command")})
    env = rows[0]["environment"]
    doc = {"what": "standalone vLLM, `vllm bench serve` sweeps per model x shape x concurrency (bench/gpu/size_sweep.py)",
           "provenance": {"command": "python3 bench/gpu/size_sweep.py " + os.environ.get("SIZE_SWEEP_ARGS", ""),
                          "gpu": env.get("gpu"), "driver": env.get("driver"), "vllm": env.get("vllm"),
                          "torch": env.get("torch"), "cuda_runtime": env.get("cuda_runtime"), "date": env.get("date_utc"),
                          "weights": "random (load_format dummy), the models' published config.json",
                          "load": "random prompts of exactly input_len tokens, output_len tokens with --ignore-eos, "
                                  "max(4, 2 x concurrency) requests after min(concurrency, 8) warm-ups"},
           "engines": {m: {"engine": e["engine"], "tensor_parallel_size": e["tensor_parallel_size"],
                           "startup_s": e["startup_s"], "vllm": e["vllm"]} for m, e in engines.items()},
           "skipped": [{"model": r["model"], "input_len": r["input_len"], "output_len": r["output_len"], **s}
                       for r in rows if r.get("kind") != "engine" for s in r.get("skipped", [])],
           "points": points}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return doc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out")
    parser.add_argument("--models", default="llama8b,qwen32b")
    parser.add_argument("--shapes", default="2048x128,512x256,128x512")
    parser.add_argument("--concurrency", default="1,8,32,128,256")
    parser.add_argument("--budget", type=float, default=3000, help="seconds for the whole run")
    parser.add_argument("--report", nargs=2, metavar=("SIZE_SWEEP_JSONL", "OUT_JSON"))
    args = parser.parse_args(argv)
    if args.report:
        doc = report(*args.report)
        print(f"{len(doc['points'])} points, {len(doc['skipped'])} skipped -> {args.report[1]}")
        return 0
    if not args.out:
        parser.error("--out DIR is required")
    unknown = [m for m in args.models.split(",") if m not in make_models.CONFIGS]
    if unknown:
        parser.error(f"unknown model {unknown}: known {', '.join(make_models.CONFIGS)}")
    os.makedirs(args.out, exist_ok=True)
    shapes = parse_shapes(args.shapes)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    deadline = T0 + args.budget
    env_info = environment()
    log("machine:", json.dumps(env_info))
    for name in args.models.split(","):
        if deadline - time.time() < 180:
            log(f"skip {name}: {deadline - time.time():.0f} s left")
            continue
        run_model(name, shapes, concurrency, args.out, deadline, env_info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
