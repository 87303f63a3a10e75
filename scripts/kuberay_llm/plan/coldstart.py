"""A tier's predicted cold start, apply -> HEALTHY, as a sum of named terms, each with its assumption.

Terms, in order: pulling the Ray image (assumed size and throughput, data/cold-start.yaml), downloading the
checkpoint from where model_source points (assumed throughput per kind of storage), reading it from disk onto the
GPUs (assumed disk throughput), vLLM's engine start-up (torch.compile, CUDA graph capture, memory profiling:
measured standalone `vllm serve` starts less their weight loading, on the same GPU type when one was measured,
else the median over all), and Ray + KubeRay + Serve (measured: a start through Ray Serve LLM or through KubeRay
less the standalone start of the same file). The measured terms are fitted by kuberay_llm.plan.perf_fit into
perf-fit.yaml's cold_start; `make bench-size` checks the sum against every measured start, each predicted from the
other measurements only (leave one out).
"""

from __future__ import annotations

import functools
import statistics
import sys
from dataclasses import dataclass, field

import yaml

from kuberay_llm.plan.catalog import DATA_DIR, Gpu, Model
from kuberay_llm.plan.weights import stage_weight_bytes

GiB = 1024**3
GOAL = 0.20  # within 20% of every measured start


@dataclass(frozen=True)
class Term:
    name: str
    seconds: float
    assumption: str


@dataclass
class ColdStart:
    terms: list[Term] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.terms)

    def lines(self) -> list[str]:
        width = max(len(t.name) for t in self.terms)
        return ([f"predicted cold start, apply -> HEALTHY: {self.seconds:.0f} s ({self.seconds / 60:.1f} min)"]
                + [f"  {t.name:<{width}} {t.seconds:6.0f} s  {t.assumption}" for t in self.terms])

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 1),
                "terms": [{"name": t.name, "seconds": round(t.seconds, 1), "assumption": t.assumption}
                          for t in self.terms]}


@functools.cache
def assumptions() -> dict:
    return yaml.safe_load((DATA_DIR / "cold-start.yaml").read_text())


def source_kind(model_source: str) -> str:
    if model_source.startswith("s3://"):
        return "s3"
    if model_source.startswith(("gs://", "gcs://")):
        return "gs"
    if model_source.startswith("/"):
        return "local"
    return "huggingface"


def measured_terms(fit: dict, gpu: Gpu) -> tuple[float, str, float, str]:
    """(engine start-up s, where from, Ray + KubeRay + Serve s, where from) from perf-fit.yaml's cold_start."""
    cold = fit["cold_start"]
    per_gpu = cold["engine_start_s"]
    if gpu.name in per_gpu:
        count = cold["engine_starts"][gpu.name]
        engine, where = per_gpu[gpu.name], f"median of {count} vLLM start{'s' * (count != 1)} measured on {gpu.name}"
    else:
        engine, where = (cold["engine_start_all_s"], f"none measured on {gpu.name}: median of the "
                         f"{cold['vllm_starts']} vLLM starts on {', '.join(per_gpu)}")
    return (engine, f"{where}, less weight loading",
            cold["serve_overhead_s"], f"median of {cold['serve_starts']} measured starts through Ray Serve / KubeRay "
            "less the standalone vLLM start beside them")


def predict(model: Model, gpu: Gpu, *, tp: int, pp: int, model_source: str, load_format: str = "auto",
            fit: dict | None = None, image_cached: bool = False) -> ColdStart:
    from kuberay_llm.plan import perf_fit

    fit = fit or perf_fit.committed()
    a = assumptions()
    checkpoint = stage_weight_bytes(model, 1, 1)[0] / GiB
    per_pod = checkpoint / pp
    out = ColdStart()
    image = a["image"]
    out.terms.append(Term("image pull", 0.0 if image_cached else image["compressed_gib"] / image["pull_gib_per_s"],
                          "the node has the image" if image_cached else
                          f"{image['name']}, {image['compressed_gib']} GiB compressed at {image['pull_gib_per_s']} "
                          "GiB/s (assumed; 0 on a node that has it)"))
    if load_format == "dummy":
        out.terms.append(Term("weights download", 0.0, "load_format dummy: random weights, nothing to download"))
        out.terms.append(Term("weights load", fit["cold_start"]["dummy_load_s"],
                              "load_format dummy: allocation only (median measured)"))
    else:
        kind = source_kind(model_source)
        speed = a["download_gib_per_s"][kind]
        out.terms.append(Term("weights download", checkpoint / speed if speed else 0.0,
                              f"{checkpoint:.1f} GiB from {kind} ({model_source}) at {speed} GiB/s (assumed)" if speed
                              else f"{model_source} is a local path: nothing to download"))
        disk = a["disk_read_gib_per_s"]
        out.terms.append(Term("weights load", per_pod / disk,
                              f"{per_pod:.1f} GiB per pod from disk at {disk} GiB/s (assumed)"))
    engine, engine_where, serve, serve_where = measured_terms(fit, gpu)
    out.terms.append(Term("engine start-up", engine, f"torch.compile + CUDA graph capture + profiling: {engine_where}"))
    out.terms.append(Term("Ray + KubeRay + Serve", serve, serve_where))
    return out


def fit_cold_start(starts) -> dict:
    """perf-fit.yaml's cold_start from the measured starts (kuberay_llm.plan.perf_data.Start)."""
    from kuberay_llm.plan.perf_fit import rounded

    vllm = [s for s in starts if s.kind == "vllm"]
    per_gpu: dict[str, list[float]] = {}
    for s in vllm:
        per_gpu.setdefault(s.gpu, []).append(s.seconds - s.load_s)
    overheads = _overheads(starts)
    return {"engine_start_s": {g: rounded(statistics.median(v)) for g, v in sorted(per_gpu.items())},
            "engine_starts": {g: len(v) for g, v in sorted(per_gpu.items())},
            "engine_start_all_s": rounded(statistics.median(s.seconds - s.load_s for s in vllm)),
            "vllm_starts": len(vllm),
            "serve_overhead_s": rounded(statistics.median(overheads.values())) if overheads else 0.0,
            "serve_starts": len(overheads),
            "dummy_load_s": rounded(statistics.median(s.load_s for s in starts if s.load_s))}


def _overheads(starts) -> dict[str, float]:
    """Per Ray Serve / KubeRay start: its seconds less the standalone vLLM start in the same file."""
    base = {s.source: s for s in starts if s.kind == "vllm"}
    return {s.label: s.seconds - base[s.source].seconds for s in starts if s.kind != "vllm" and s.source in base}


def leave_one_out(starts, start) -> float:
    """`start` predicted from the other measured starts only (dummy weights, image on the node)."""
    others = [s for s in starts if s is not start]
    if start.kind == "vllm":
        others = [s for s in others if s.source != start.source]  # their overheads were measured against it
    same_gpu = [s.seconds - s.load_s for s in others if s.kind == "vllm" and s.gpu == start.gpu]
    engine = statistics.median(same_gpu or [s.seconds - s.load_s for s in others if s.kind == "vllm"])
    predicted = engine + start.load_s
    overheads = list(_overheads(others).values())
    if start.kind != "vllm" and overheads:
        predicted += statistics.median(overheads)
    return predicted


def report_measured(starts, out=sys.stdout) -> bool:
    """Each measured start against the estimate from the others; True when all are within GOAL."""
    print("Cold start: each measured start predicted from the other measurements (leave one out; dummy weights and "
          "the image on the node, as measured)", file=out)
    worst = 0.0
    for s in starts:
        predicted = leave_one_out(starts, s)
        error = predicted / s.seconds - 1
        worst = max(worst, abs(error))
        print(f"  {s.label:<64} {s.kind:<7} measured {s.seconds:6.1f} s, predicted {predicted:6.1f} s, {error:+6.1%}",
              file=out)
    met = worst <= GOAL
    print(f"  worst {worst:.1%} over {len(starts)} starts; goal <= {GOAL:.0%}: {'met' if met else 'NOT MET'}", file=out)
    return met
