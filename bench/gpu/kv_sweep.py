#!/usr/bin/env python3
"""Start `vllm serve MODEL_DIR --load-format dummy` once per configuration and record vLLM's own start-up
memory accounting (weights, peak activation, non-torch memory, CUDA graph memory, KV cache GiB and tokens,
maximum concurrency) with the exact command and the machine it ran on. One fresh process per point, the GPU
empty before each: vLLM measures non-torch memory device-wide, so nothing else may run on the GPU.

usage: python3 bench/gpu/kv_sweep.py --models DIR --out DIR [--logs DIR] [--budget S] [--list] [LABEL ...]
  --models   directory of model dirs written by bench/gpu/make_models.py
  --out      results.jsonl (one JSON row per point, appended) and env.json land here
  --logs     each point's full server log, log-LABEL.txt (default: --out)
  --budget   stop starting new points when fewer than ~90 s of this many seconds are left (default 3000)
  LABEL      points to run (default: all of POINTS, in order)
Needs vLLM (0.26.0 was measured) on PATH/PYTHONPATH and one otherwise idle NVIDIA GPU.
Then: python3 bench/gpu/to_data.py OUT/env.json OUT/results.jsonl > scripts/kuberay_llm/data/measured/<name>.yaml
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vllm_log  # noqa: E402
from machine import environment, gpu_apps, wait_gpu_free  # noqa: E402

# label: (model dir, extra `vllm serve` args, stage). Order is priority: the first point of each model is
# also the first cold compile of that model. Stage "kv" stops the server once the KV cache is sized (every
# number the KV budget depends on is logged by then, at DEBUG level); "ready" waits for CUDA graph capture
# and the summary line, which adds the CUDA graph pool's actual size.
POINTS = {
    "L1": ("llama8b", ["--max-model-len", "8192", "--max-num-seqs", "64", "--gpu-memory-utilization", "0.9"], "kv"),
    "M1": ("mixtral", ["--max-model-len", "32768", "--max-num-seqs", "256", "--gpu-memory-utilization", "0.92"], "ready"),
    "D1": ("dsv2lite", ["--max-model-len", "16384", "--max-num-seqs", "64", "--gpu-memory-utilization", "0.9"], "kv"),
    "L2": ("llama8b", ["--max-model-len", "32768", "--max-num-seqs", "256", "--gpu-memory-utilization", "0.92"], "kv"),
    "D2": ("dsv2lite", ["--max-model-len", "32768", "--max-num-seqs", "256", "--gpu-memory-utilization", "0.8",
                        "--max-num-batched-tokens", "16384"], "kv"),
    "M2": ("mixtral", ["--max-model-len", "8192", "--max-num-seqs", "64", "--gpu-memory-utilization", "0.9",
                       "--max-num-batched-tokens", "16384"], "kv"),
    "L3": ("llama8b", [], "kv"),  # vLLM's defaults: max_model_len 131072, max_num_seqs/tokens for the GPU, 0.92
    "D3": ("dsv2lite", [], "kv"),
    "L4": ("llama8b", ["--max-model-len", "4096", "--max-num-seqs", "512", "--gpu-memory-utilization", "0.8",
                       "--max-num-batched-tokens", "16384"], "kv"),
    "M3": ("mixtral", [], "kv"),
    "L5": ("llama8b", ["--max-model-len", "16384", "--max-num-seqs", "128", "--gpu-memory-utilization", "0.95",
                       "--max-num-batched-tokens", "2048"], "kv"),
    "D4": ("dsv2lite", ["--max-model-len", "8192", "--max-num-seqs", "512", "--gpu-memory-utilization", "0.9",
                        "--max-num-batched-tokens", "4096"], "kv"),
}
PORT = 8011
EST_COLD, EST_WARM, TIMEOUT = 150, 90, 420
MARK_KV = "Maximum concurrency for"
MARK_READY = ("Free memory on device", "Application startup complete")


def log(*a):
    print(f"[kv_sweep {time.strftime('%H:%M:%S')}]", *a, flush=True)


def command(model_dir: str, extra: list[str]) -> list[str]:
    return ["vllm", "serve", model_dir, "--load-format", "dummy", "--host", "127.0.0.1", "--port", str(PORT),
            *extra]


def stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        t = time.time()
        while time.time() - t < wait:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.poll()
                return
            proc.poll()
            time.sleep(0.3)


def run_point(label: str, models: str, out: str, logs: str, deadline: float) -> dict:
    model, extra, stage = POINTS[label]
    cmd = command(os.path.join(models, model), extra)
    before = wait_gpu_free()
    logf = os.path.join(logs, f"log-{label}.txt")
    env = dict(os.environ, VLLM_LOGGING_LEVEL="DEBUG", PYTHONUNBUFFERED="1", VLLM_NO_USAGE_STATS="1")
    log(f"{label}: {' '.join(cmd)} (stage {stage}); gpu before {before}")
    t0 = time.time()
    with open(logf, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        status, text = "timeout", ""
        while time.time() - t0 < TIMEOUT and time.time() < deadline:
            time.sleep(1)
            text = open(logf, errors="replace").read()
            done_kv = MARK_KV in text and "Memory profiling takes" in text
            if (stage == "kv" and done_kv) or any(m in text for m in MARK_READY):
                status = "measured"
                time.sleep(1 if stage == "kv" else 2)
                break
            if proc.poll() is not None:
                status = "exited"
                break
        stop(proc)
    wall = round(time.time() - t0, 1)
    text = open(logf, errors="replace").read()
    row = {"label": label, "model": model, "stage": stage, "status": status, "wall_s": wall,
           "command": " ".join(["vllm", "serve", model, *cmd[3:]]), "args": extra,
           "gpu_before": before, **vllm_log.parse(text), "log_lines": vllm_log.key_lines(text)}
    if status != "measured":
        row["log_tail"] = text.splitlines()[-40:]
    row["gpu_after"] = wait_gpu_free(limit=max(10.0, min(90.0, deadline + 30 - time.time())))
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    log(f"{label}: {status} in {wall}s: weights {row.get('weights_gib')} act {row.get('peak_activation_gib')} "
        f"non-torch {row.get('non_torch_gib')} cg-est {row.get('cudagraph_util')}->{row.get('cudagraph_equiv_util')} "
        f"kv {row.get('kv_cache_gib')} GiB {row.get('kv_cache_tokens')} tok conc {row.get('max_concurrency')}x")
    return row


def main(argv: list[str]) -> int:
    args = list(argv)

    def opt(name: str, default=None):
        if name in args:
            i = args.index(name)
            value = args[i + 1]
            del args[i:i + 2]
            return value
        return default

    if "--list" in args:
        for label, (model, extra, stage) in POINTS.items():
            print(label, model, stage, " ".join(extra) or "(vLLM defaults)")
        return 0
    models, out = opt("--models"), opt("--out")
    logs = opt("--logs", out)
    budget = float(opt("--budget", 3000))
    if not models or not out:
        print(__doc__, file=sys.stderr)
        return 2
    labels = args or list(POINTS)
    unknown = [x for x in labels if x not in POINTS]
    if unknown:
        print(f"unknown point {unknown}: known {', '.join(POINTS)}", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    deadline = time.time() + budget
    if gpu_apps():
        log("warning: the GPU is in use at start:", gpu_apps())

    def write_env():  # imports vLLM, torch and Ray in subprocesses (~30 s): alongside the first point
        with open(os.path.join(out, "env.json"), "w") as f:
            json.dump(environment(), f, indent=1)
    env_thread = threading.Thread(target=write_env)
    env_thread.start()
    started: set[str] = set()
    for label in labels:
        model = POINTS[label][0]
        left = deadline - time.time()
        est = EST_WARM if model in started else EST_COLD
        if left < est:
            log(f"skip {label}: {left:.0f}s left < {est}s")
            continue
        row = run_point(label, models, out, logs, deadline)
        if row["status"] == "measured":
            started.add(model)
    env_thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
