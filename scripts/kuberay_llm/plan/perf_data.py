"""Measured `vllm bench serve` levels of standalone vLLM, the performance model's ground truth.

Read from bench/gpu/results/: every size-sweep-*.json (bench/gpu/size_sweep.py's report(): engines and points),
and the standalone-vLLM rows of the earlier runs (ray-serve-vs-vllm-h200.json and high-throughput-h200.json:
mode `vllm`; e2e-gpu-h100.json: `standalone_vllm`). Those earlier runs served Llama-3.1-8B's config.json with
random weights (overlays/small's engine settings, 512 in / 256 out); their files name the served model
`my-llama-3.1-8b`, so the model is set here. Every point keeps its engine settings and the KV cache tokens vLLM
logged, so the fit checks the speed model, not the planner (the planner's figure where a log was not parsed). Each point has a label `file:model:IxO:cN`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from kuberay_llm.plan.catalog import find_gpu, find_model
from kuberay_llm.toolchain import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "gpu" / "results"
EARLIER_RUNS_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True)
class Point:
    label: str
    source: str            # file name
    gpu: str               # catalog name
    model: str             # Hugging Face id
    input_len: int
    output_len: int
    concurrency: int
    num_prompts: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    kv_cache_tokens: int
    output_tokens_per_s: float
    ttft_p50_s: float
    tpot_p50_s: float
    ttft_p90_s: float | None = None  # e2e-gpu-h100.json kept p50 and p99 only
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9

    @property
    def shape(self) -> str:
        return f"{self.input_len}x{self.output_len}"


@dataclass(frozen=True)
class Start:
    """A measured start: what was started, on which GPU, and the seconds to serving."""

    label: str
    source: str
    gpu: str
    model: str
    kind: str              # vllm (standalone vllm serve) | ray (Ray Serve LLM on a started Ray) | cluster (apply -> HEALTHY)
    seconds: float
    load_s: float = 0.0    # vLLM's "Model loading took ... seconds" (dummy weights: allocation only)


def _gpu_name(text: str) -> str:
    """`NVIDIA H100 80GB HBM3` -> the catalog's H100-80GB (by its node label spelling)."""
    return find_gpu(text.strip().replace(" ", "-")).name


def _short(model: str) -> str:
    return model.split("/")[-1]


def _flag(command: str, name: str, default: int) -> int:
    match = re.search(rf"--{name}[ =](\d+)", command or "")
    return int(match.group(1)) if match else default


def _label(source: str, model: str, i: int, o: int, c: int) -> str:
    return f"{Path(source).stem}:{_short(model)}:{i}x{o}:c{c}"


def _sweep_file(path: Path) -> tuple[list[Point], list[Start]]:
    doc = json.loads(path.read_text())
    gpu = _gpu_name(doc["provenance"]["gpu"])
    points, starts = [], []
    for hub_id, engine in doc.get("engines", {}).items():
        model = find_model(hub_id).name
        vllm = engine.get("vllm") or {}
        if engine.get("startup_s"):
            starts.append(Start(f"{path.stem}:{_short(model)}:start", path.name, gpu, model, "vllm",
                                float(engine["startup_s"]), float(vllm.get("weights_load_s") or 0.0)))
    for p in doc["points"]:
        if p.get("failed"):
            continue
        model = find_model(p["model"]).name
        engine = doc["engines"][p["model"]]
        settings, vllm = engine["engine"], engine.get("vllm") or {}
        points.append(Point(
            label=_label(path.name, model, p["input_len"], p["output_len"], p["concurrency"]), source=path.name,
            gpu=gpu, model=model, input_len=p["input_len"], output_len=p["output_len"],
            concurrency=p["concurrency"], num_prompts=p.get("num_prompts") or max(4, 2 * p["concurrency"]),
            max_num_seqs=settings["max_num_seqs"], max_num_batched_tokens=settings["max_num_batched_tokens"],
            max_model_len=settings["max_model_len"], kv_cache_tokens=int(vllm.get("kv_cache_tokens") or 0),
            output_tokens_per_s=p["output_throughput"], ttft_p50_s=p["median_ttft_ms"] / 1000,
            ttft_p90_s=p["p90_ttft_ms"] / 1000 if p.get("p90_ttft_ms") is not None else None,
            tpot_p50_s=p["median_tpot_ms"] / 1000, tensor_parallel_size=int(engine.get("tensor_parallel_size") or 1),
            gpu_memory_utilization=float(settings.get("gpu_memory_utilization", 0.9))))
    return points, starts


def _side_script_file(path: Path) -> tuple[list[Point], list[Start]]:
    """bench/gpu/throughput.py's file: modes vllm / ray / ray-ht, each with its sweep."""
    doc = json.loads(path.read_text())
    gpu = _gpu_name(doc["environment"]["gpu"])
    model = EARLIER_RUNS_MODEL
    points, starts = [], []
    for index, mode in enumerate(doc["modes"]):
        memory = mode.get("memory") or {}
        load = float(memory.get("weights_load_s") or 0.0)
        if mode["mode"] == "vllm":
            starts.append(Start(f"{path.stem}:{_short(model)}:vllm-start", path.name, gpu, model, "vllm",
                                float(mode["startup_s"]), load))
        elif mode.get("startup_incl_ray_start_s"):
            starts.append(Start(f"{path.stem}:{_short(model)}:{mode['mode']}-start-{index}", path.name, gpu, model,
                                "ray", float(mode["startup_incl_ray_start_s"]), load))
        if mode["mode"] != "vllm":
            continue
        command = mode.get("command", "")
        spec = mode["sweep"]["spec"]
        for lv in mode["sweep"]["levels"]:
            c = lv["concurrency"]
            points.append(Point(
                label=_label(path.name, model, spec["input_len"], spec["output_len"], c), source=path.name, gpu=gpu,
                model=model, input_len=spec["input_len"], output_len=spec["output_len"], concurrency=c,
                num_prompts=lv["completed"], max_num_seqs=_flag(command, "max-num-seqs", 256),
                max_num_batched_tokens=int(memory.get("max_num_batched_tokens") or 8192),
                max_model_len=_flag(command, "max-model-len", 8192), kv_cache_tokens=int(memory["kv_cache_tokens"]),
                output_tokens_per_s=lv["output_throughput"], ttft_p50_s=lv["median_ttft_ms"] / 1000,
                ttft_p90_s=lv["p90_ttft_ms"] / 1000, tpot_p50_s=lv["median_tpot_ms"] / 1000))
    return points, starts


def _e2e_file(path: Path) -> tuple[list[Point], list[Start]]:
    """bench/gpu/e2e_gpu.py's file: standalone_vllm levels (p50/p99 only; max(8, 4 x concurrency) requests)."""
    doc = json.loads(path.read_text())
    gpu = _gpu_name(doc["provenance"]["gpu"])
    model = EARLIER_RUNS_MODEL
    standalone = doc["standalone_vllm"]
    vllm = standalone["vllm"]
    command = standalone.get("command", "")
    points = [Point(label=_label(path.name, model, 512, 256, int(c)), source=path.name, gpu=gpu, model=model,
                    input_len=512, output_len=256, concurrency=int(c), num_prompts=max(8, 4 * int(c)),
                    max_num_seqs=_flag(command, "max-num-seqs", 256),
                    max_num_batched_tokens=int(vllm["max_num_batched_tokens"]), max_model_len=int(vllm["max_model_len"]),
                    kv_cache_tokens=int(vllm["kv_cache_tokens"]), output_tokens_per_s=lv["output_throughput"],
                    ttft_p50_s=lv["median_ttft_ms"] / 1000, tpot_p50_s=lv["median_tpot_ms"] / 1000)
              for c, lv in standalone["levels"].items()]
    starts = [Start(f"{path.stem}:{_short(model)}:vllm-start", path.name, gpu, model, "vllm",
                    float(standalone["startup_s"]), float(standalone["vllm"].get("weights_load_s") or 0.0)),
              Start(f"{path.stem}:{_short(model)}:cluster-start", path.name, gpu, model, "cluster",
                    float(doc["default"]["apply_to_healthy_s"]), float(doc["default"]["vllm"].get("weights_load_s") or 0))]
    return points, starts


READERS = {"ray-serve-vs-vllm-h200.json": _side_script_file, "high-throughput-h200.json": _side_script_file,
           "e2e-gpu-h100.json": _e2e_file}


def load(results_dir: Path = RESULTS_DIR) -> tuple[list[Point], list[Start]]:
    """Every measured point and start under `results_dir`, in a fixed order (file name, then as written)."""
    points: list[Point] = []
    starts: list[Start] = []
    for path in sorted(results_dir.glob("*.json")):
        reader = _sweep_file if path.name.startswith("size-sweep-") else READERS.get(path.name)
        if reader is None:
            continue
        more_points, more_starts = reader(path)
        points += more_points
        starts += more_starts
    return points, starts


@dataclass(frozen=True)
class ServePair:
    """One concurrency level measured through Ray Serve LLM and under standalone vLLM, same engine and load."""

    label: str
    concurrency: int
    vllm_ttft_p50_s: float
    serve_ttft_p50_s: float
    vllm_tpot_p50_s: float
    serve_tpot_p50_s: float


def serve_pairs(results_dir: Path = RESULTS_DIR) -> list[ServePair]:
    """Ray Serve LLM's default mode (not the high-throughput variant) beside standalone vLLM: the side-script
    runs (mode `ray` vs `vllm`) and the e2e run (through KubeRay, `default` vs `standalone_vllm`)."""
    pairs = []
    for name in ("high-throughput-h200.json", "ray-serve-vs-vllm-h200.json"):
        path = results_dir / name
        if not path.exists():
            continue
        modes = json.loads(path.read_text())["modes"]
        base = {lv["concurrency"]: lv for m in modes if m["mode"] == "vllm" for lv in m["sweep"]["levels"]}
        for index, mode in enumerate(modes):
            if mode["mode"] != "ray":
                continue
            for lv in mode["sweep"]["levels"]:
                ref = base[lv["concurrency"]]
                pairs.append(ServePair(f"{path.stem}:ray-{index}:c{lv['concurrency']}", lv["concurrency"],
                                       ref["median_ttft_ms"] / 1000, lv["median_ttft_ms"] / 1000,
                                       ref["median_tpot_ms"] / 1000, lv["median_tpot_ms"] / 1000))
    path = results_dir / "e2e-gpu-h100.json"
    if path.exists():
        doc = json.loads(path.read_text())
        for c, lv in doc["default"]["levels"].items():
            ref = doc["standalone_vllm"]["levels"][c]
            pairs.append(ServePair(f"{path.stem}:kuberay:c{c}", int(c), ref["median_ttft_ms"] / 1000,
                                   lv["median_ttft_ms"] / 1000, ref["median_tpot_ms"] / 1000,
                                   lv["median_tpot_ms"] / 1000))
    return pairs
