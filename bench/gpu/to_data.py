#!/usr/bin/env python3
"""Turn kv_sweep.py's results into the planner's measured-data file (YAML), with provenance.

usage: python3 bench/gpu/to_data.py --env OUT/env.json --gpu H200 [--logs DIR] RESULTS.jsonl ... > FILE.yaml
  --gpu   the planner's catalog name of the GPU (scripts/kuberay_llm/data/gpus.yaml)
  --logs  directory of the full server logs (log-LABEL.txt): re-read with this repo's bench/gpu/vllm_log.py
          instead of the numbers the sweep parsed at the time (same regexes, possibly newer)
Settings a point left to vLLM are written with the value vLLM resolves and listed under `defaults`.
"""

from __future__ import annotations

import json
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_models  # noqa: E402
import vllm_log  # noqa: E402

# What `vllm serve` resolves when a flag is absent (vLLM 0.26.0): vllm/config/cache.py
# gpu_memory_utilization default 0.92; vllm/engine/arg_utils.py get_batch_defaults: GPUs with >= 70 GiB other
# than A100 get max_num_seqs 1024 and max_num_batched_tokens 8192 in the OpenAI API server.
DEFAULTS = {"gpu_memory_utilization": 0.92, "max_num_seqs": 1024, "max_num_batched_tokens": 8192}
MEASURED = ("weights_gib", "peak_activation_gib", "non_torch_gib", "cudagraph_estimate_gib", "cudagraph_actual_gib",
            "kv_cache_gib", "kv_cache_tokens", "max_concurrency")


def flag(args: list[str], name: str):
    return args[args.index(name) + 1] if name in args else None


def point(row: dict, gpu: str, logs: str | None) -> dict:
    parsed, lines = row, row.get("log_lines", [])
    path = os.path.join(logs, f"log-{row['label']}.txt") if logs else None
    if path and os.path.exists(path):
        text = open(path, errors="replace").read()
        parsed, lines = vllm_log.parse(text), vllm_log.key_lines(text)
    args = row["args"]
    settings, defaults = {}, []
    for key, cast in (("gpu_memory_utilization", float), ("max_num_seqs", int), ("max_num_batched_tokens", int)):
        value = flag(args, "--" + key.replace("_", "-"))
        if value is None:
            value = DEFAULTS[key]
            defaults.append(key)
        settings[key] = cast(value)
    settings["max_model_len"] = parsed["max_model_len"]
    if "--max-model-len" not in args:
        defaults.append("max_model_len")
    if parsed.get("max_num_batched_tokens") not in (None, settings["max_num_batched_tokens"]):
        raise SystemExit(f"{row['label']}: log says max_num_batched_tokens {parsed['max_num_batched_tokens']}")
    measured = {k: parsed[k] for k in MEASURED if k in parsed}
    runner = parsed.get("model_runner", "V1")
    if runner == "V2":  # its profile_cudagraph_memory() returns 0: no estimate is subtracted, none is logged
        measured.setdefault("cudagraph_estimate_gib", 0.0)
    out = {"label": row["label"], "model": make_models.CONFIGS[row["model"]]["hub_id"], "gpu": gpu,
           "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "settings": settings}
    if defaults:
        out["defaults"] = sorted(defaults)
    out.update({"model_runner": runner, "attention_backend": (parsed.get("attn_backend") or [None])[0],
                "measured": measured})
    if "cudagraph_modes" in parsed:
        out["cudagraph_modes"] = parsed["cudagraph_modes"]
    out.update({"command": row["command"].replace("vllm serve ", f"vllm serve <make_models.py dir>/", 1),
                "env": {"VLLM_LOGGING_LEVEL": "DEBUG"}, "stage": row["stage"], "wall_s": row["wall_s"],
                "log": lines})
    return out


def main(argv: list[str]) -> int:
    args = list(argv)

    def opt(name):
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value

    env_path, gpu = opt("--env"), opt("--gpu")
    logs = opt("--logs") if "--logs" in args else None
    rows = {}
    for path in args:
        for line in open(path):
            row = json.loads(line)
            if row.get("status") == "measured":
                rows[row["label"]] = row  # a label measured twice: the later run
    env = json.load(open(env_path))
    doc = {"provenance": {
        "machine": {k: env.get(k) for k in ("gpu", "gpu_count", "driver", "nvidia_smi_total", "cuda_runtime", "cpus")},
        "software": {k: env.get(k) for k in ("vllm", "torch", "transformers", "python")},
        "date_utc": env.get("date_utc"),
        "produced_by": "python3 bench/gpu/make_models.py DIR; python3 bench/gpu/kv_sweep.py --models DIR --out OUT; "
                       "python3 bench/gpu/to_data.py --env OUT/env.json --gpu " + gpu + " --logs OUT OUT/results.jsonl",
        "weights": "--load-format dummy: random values in the real checkpoint's shapes and dtype (bfloat16)",
        "numbers": "as vLLM logs them (GiB rounded to 2 decimals); the `log` lines of each point are verbatim",
    }, "points": [point(r, gpu, logs) for r in rows.values()]}
    yaml.safe_dump(doc, sys.stdout, sort_keys=False, width=120, allow_unicode=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
