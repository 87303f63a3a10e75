"""A concurrency sweep with `vllm bench serve` (vLLM's own benchmark client): fixed input and output lengths
(random token prompts, `--ignore-eos`), one level per concurrency, TTFT/TPOT/ITL/E2E percentiles and
throughput per level, in one JSON document.

Each level sends `prompts_per_level(c)` requests with at most c in flight, after `warmups` requests at that
concurrency that are not counted. The `command` recorded for each level is the `vllm bench serve` command
line that reproduces it; the levels run in one process (kuberay_llm.loadgen.runner) to import vLLM once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kuberay_llm.errors import UserError

PERCENTILES = (50, 90, 99)
METRICS = ("ttft", "tpot", "itl", "e2el")
# what the summary keeps of vLLM's result (its per-request arrays are dropped)
SCALARS = ("completed", "failed", "duration", "total_input_tokens", "total_output_tokens", "request_throughput",
           "output_throughput", "total_token_throughput", "max_output_tokens_per_s", "max_concurrency")


@dataclass
class SweepSpec:
    base_url: str                      # http://host:port (no /v1)
    model: str                         # the served model id (`/v1/models`)
    tokenizer: str                     # HF id or local directory: prompts are built with it
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 64])
    input_len: int = 512
    output_len: int = 256
    prompts_per_level: int = 4         # requests per level = max(min_prompts, prompts_per_level x concurrency)
    min_prompts: int = 16
    warmups: int = 0                   # uncounted requests before each level (vLLM's --num-warmups)
    endpoint: str = "/v1/completions"
    seed: int = 0
    timeout_s: float = 1800            # the whole sweep
    # more `vllm bench serve` flags after the generated ones (argparse: a later flag wins), e.g. another dataset:
    # ["--dataset-name", "prefix_repetition", "--prefix-repetition-num-prefixes", "8", ...]
    extra_args: list[str] = field(default_factory=list)

    def prompts(self, concurrency: int) -> int:
        return max(self.min_prompts, self.prompts_per_level * concurrency)


def validate(spec: SweepSpec) -> None:
    if not spec.base_url.startswith(("http://", "https://")):
        raise UserError(f"--endpoint {spec.base_url!r}: give a URL such as http://127.0.0.1:8000")
    if not spec.concurrency or any(c < 1 for c in spec.concurrency):
        raise UserError(f"--concurrency {','.join(map(str, spec.concurrency))}: give positive integers, e.g. 1,8,64")
    for name in ("input_len", "output_len", "prompts_per_level", "min_prompts"):
        if getattr(spec, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(spec, name)} must be at least 1")
    if spec.endpoint not in ("/v1/completions", "/v1/chat/completions"):
        raise UserError(f"--api {spec.endpoint!r}: use /v1/completions or /v1/chat/completions")


def level_argv(spec: SweepSpec, concurrency: int) -> list[str]:
    """`vllm bench serve` arguments for one level."""
    backend = "openai-chat" if spec.endpoint.endswith("chat/completions") else "openai"
    return ["--backend", backend, "--base-url", spec.base_url.rstrip("/"), "--endpoint", spec.endpoint,
            "--model", spec.model, "--tokenizer", spec.tokenizer, "--dataset-name", "random",
            "--random-input-len", str(spec.input_len), "--random-output-len", str(spec.output_len),
            "--num-prompts", str(spec.prompts(concurrency)), "--max-concurrency", str(concurrency),
            "--num-warmups", str(spec.warmups), "--ignore-eos", "--seed", str(spec.seed),
            "--percentile-metrics", ",".join(METRICS), "--metric-percentiles", ",".join(map(str, PERCENTILES)),
            "--disable-tqdm", *spec.extra_args]


def summarize(result: dict) -> dict:
    keep = {k: result[k] for k in SCALARS if k in result}
    for metric in METRICS:
        for stat in ("mean", "median", "std"):
            key = f"{stat}_{metric}_ms"
            if key in result:
                keep[key] = result[key]
        for p in PERCENTILES:
            key = f"p{p}_{metric}_ms"
            if key in result:
                keep[key] = result[key]
    return keep


def _python_with_vllm() -> str:
    """The interpreter to run the benchmark client with: this one when it imports vLLM."""
    return sys.executable


def run(spec: SweepSpec, log=print) -> dict:
    """Run every level; returns {"spec", "levels": [{"concurrency", "command", ...metrics}], ...}."""
    validate(spec)
    scripts_dir = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="kuberay-llm-bench-") as tmp:
        argvs = [level_argv(spec, c) for c in spec.concurrency]
        results = [os.path.join(tmp, f"c{c}.json") for c in spec.concurrency]
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump({"argv": argvs, "results": results}, f)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [scripts_dir, os.environ.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1")
        cmd = [_python_with_vllm(), "-m", "kuberay_llm.loadgen.runner", spec_path]
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        tail: list[str] = []
        client = "unknown"
        try:
            for line in proc.stdout:
                line = line.rstrip()
                tail = (tail + [line])[-40:]
                if line.startswith("RUNNER_VLLM "):
                    client = line.split(" ", 1)[1]
                if line.startswith("RUNNER_START "):
                    c = json.loads(line[len("RUNNER_START "):])
                    log(f"bench: concurrency {c[c.index('--max-concurrency') + 1]}, "
                        f"{c[c.index('--num-prompts') + 1]} requests ...")
                if time.time() - t0 > spec.timeout_s:
                    proc.kill()
                    raise UserError(f"the sweep ran past {spec.timeout_s:.0f} s; lower --concurrency or --prompts-per-level")
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        done = [p for p in results if os.path.exists(p)]
        if proc.returncode != 0 or len(done) != len(results):
            detail = "\n".join(tail[-15:])
            if "ModuleNotFoundError: No module named 'vllm'" in detail:
                raise UserError("the benchmark client needs vLLM (`vllm bench serve`): run from the project's "
                                ".venv (`make setup`) or `pip install vllm`")
            raise UserError(f"`vllm bench serve` failed at concurrency "
                            f"{spec.concurrency[len(done)] if len(done) < len(results) else '?'} "
                            f"(exit {proc.returncode}); its last lines:\n{detail}")
        levels = []
        for c, argv, path in zip(spec.concurrency, argvs, results):
            with open(path) as f:
                raw = json.load(f)
            levels.append({"concurrency": c, "command": "vllm bench serve " + " ".join(argv), **summarize(raw)})
    failed = [lv for lv in levels if lv.get("failed")]
    return {"spec": asdict(spec), "client": f"vllm bench serve (vLLM {client})", "levels": levels,
            "wall_s": round(time.time() - t0, 1), "failed_requests": sum(lv.get("failed", 0) for lv in failed)}
