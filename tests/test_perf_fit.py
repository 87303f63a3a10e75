"""The fitted constants are what their named fit points give (one source of truth), no held-out point is fitted
on, and the fit and the loader work on bench/gpu/size_sweep.py's own report format."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import pytest

from kuberay_llm.plan import perf, perf_data, perf_fit

pytestmark = pytest.mark.fast

GPU_DIR = Path(__file__).resolve().parents[1] / "bench" / "gpu"
TRUE = perf.Constants(compute_efficiency=0.55, bandwidth_efficiency=0.85, step_overhead_s=0.0025,
                      request_overhead_s=0.02)


def test_the_committed_constants_are_what_a_refit_gives():
    assert perf_fit.refit() == perf_fit.committed()


def test_fit_points_are_the_named_rule_and_everything_else_is_held_out():
    points, _ = perf_data.load()
    fitted = set(perf_fit.committed()["fit_points"])
    groups = {(p.source, p.model) for p in points}
    for source, model in groups:
        group = [p for p in points if (p.source, p.model) == (source, model)]
        shape = "512x256" if any(p.shape == "512x256" for p in group) else group[0].shape
        levels = sorted((p for p in group if p.shape == shape), key=lambda p: p.concurrency)
        expected = {levels[0].label, levels[-1].label}
        assert {p.label for p in group} & fitted == expected
    assert len(fitted) < len(points)


def test_the_report_counts_only_held_out_points_in_its_errors():
    out = io.StringIO()
    perf_fit.report(out=out)
    text = out.getvalue()
    held = [line for line in text.splitlines() if " held-out " in line]
    points, _ = perf_data.load()
    assert len(held) == len(points) - len(perf_fit.committed()["fit_points"])
    assert f"over {len(held)} points" in text


def test_a_stale_data_file_is_reported_and_fails(monkeypatch):
    doc = perf_fit.committed()
    stale = {**doc, "constants": {**doc["constants"], "compute_efficiency": doc["constants"]["compute_efficiency"] / 2}}
    monkeypatch.setattr(perf_fit, "committed", lambda: stale)
    out = io.StringIO()
    assert perf_fit.report(out=out) == 1
    assert ("FAILED: scripts/kuberay_llm/data/perf-fit.yaml is not what the measured files give: run "
            "`python -m kuberay_llm.plan.perf_fit --write`") in out.getvalue()


def _size_sweep_module():
    sys.path.insert(0, str(GPU_DIR))
    try:
        import size_sweep
        return size_sweep
    finally:
        sys.path.remove(str(GPU_DIR))


def _synthetic_sweep(tmp_path: Path) -> Path:
    """A size-sweep jsonl as bench/gpu/size_sweep.py writes it, its levels predicted with TRUE, through its own
    report() into tmp_path/results/size-sweep-h100.json."""
    size_sweep = _size_sweep_module()
    env = {"gpu": "NVIDIA H100 80GB HBM3", "driver": "580", "vllm": "0.26.0", "date_utc": "2026-12-07T00:00:00Z"}
    rows = []
    for hub_id, kv in (("meta-llama/Llama-3.1-8B-Instruct", 450_000), ("Qwen/Qwen2.5-32B-Instruct", 60_000)):
        base = {"model": hub_id, "engine": size_sweep.ENGINE, "tensor_parallel_size": 1, "command": "vllm serve",
                "startup_s": 150.0, "environment": env}
        for i, o in ((2048, 128), (512, 256), (128, 512)):
            levels = []
            for c in (1, 8, 32):
                point = perf_data.Point(
                    label="", source="", gpu="H100-80GB", model=hub_id, input_len=i, output_len=o, concurrency=c,
                    num_prompts=size_sweep.prompts(c), max_num_seqs=size_sweep.ENGINE["max_num_seqs"],
                    max_num_batched_tokens=size_sweep.ENGINE["max_num_batched_tokens"],
                    max_model_len=size_sweep.ENGINE["max_model_len"], kv_cache_tokens=kv, output_tokens_per_s=1,
                    ttft_p50_s=1, tpot_p50_s=1)
                r = perf_fit.predict(point, TRUE)
                levels.append({"concurrency": c, "completed": size_sweep.prompts(c), "duration": r.duration_s,
                               "output_throughput": r.output_tokens_per_s, "median_ttft_ms": r.ttft_p50_s * 1e3,
                               "p90_ttft_ms": r.ttft_p90_s * 1e3, "median_tpot_ms": r.tpot_p50_s * 1e3,
                               "request_throughput": r.request_rate})
            rows.append({**base, "input_len": i, "output_len": o, "levels": levels, "skipped": []})
        rows.append({**base, "kind": "engine", "vllm": {"kv_cache_tokens": kv, "weights_load_s": 3.0}})
    jsonl = tmp_path / "size-sweep.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = tmp_path / "results"
    results.mkdir()
    size_sweep.report(str(jsonl), str(results / "size-sweep-h100.json"))
    return results


def test_a_size_sweep_file_is_read_and_the_fit_recovers_the_constants_that_made_it(tmp_path):
    results = _synthetic_sweep(tmp_path)
    points, starts = perf_data.load(results)
    assert len(points) == 2 * 3 * 3
    assert {p.gpu for p in points} == {"H100-80GB"}
    assert [s.kind for s in starts] == ["vllm", "vllm"]
    labels = perf_fit.fit_labels(points)
    assert sorted(labels) == sorted(f"size-sweep-h100:{m}:512x256:c{c}"
                                    for m in ("Llama-3.1-8B-Instruct", "Qwen2.5-32B-Instruct") for c in (1, 32))
    fitted = perf_fit.fit([p for p in points if p.label in labels])
    for name in perf_fit.PARAMS:
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=0.03), name


def test_the_fit_can_fail_a_point_the_model_cannot_match(tmp_path):
    """Held-out errors are real errors: a point measured 40% slower than the model shows up as one."""
    results = _synthetic_sweep(tmp_path)
    path = results / "size-sweep-h100.json"
    doc = json.loads(path.read_text())
    slow = doc["points"][0]
    slow["output_throughput"] *= 0.6
    path.write_text(json.dumps(doc))
    points, _ = perf_data.load(results)
    point = next(p for p in points if p.label.endswith(f"{slow['input_len']}x{slow['output_len']}:c{slow['concurrency']}")
                 and p.model == slow["model"])
    error = perf_fit.errors(point, perf_fit.predict(point, TRUE))["output_tokens_per_s"]
    assert error == pytest.approx(1 / 0.6 - 1, rel=1e-6)


def test_nelder_mead_finds_a_known_minimum():
    best = perf_fit.nelder_mead(lambda v: (v[0] - 3) ** 2 + 10 * (v[1] + 1) ** 2, [0.0, 0.0], [1.0, 1.0])
    assert best == pytest.approx([3, -1], abs=1e-4)


def test_constants_are_rounded_to_what_the_data_file_keeps():
    assert perf_fit.rounded(0.123456) == 0.123
    assert dataclasses.astuple(perf_fit.constants()) == tuple(perf_fit.committed()["constants"].values())


def test_a_sweep_whose_engine_log_was_not_parsed_takes_the_planners_kv_cache(tmp_path):
    from kuberay_llm.plan.accounting import PlanInput, plan

    results = _synthetic_sweep(tmp_path)
    path = results / "size-sweep-h100.json"
    doc = json.loads(path.read_text())
    for engine in doc["engines"].values():
        engine["vllm"] = {}
    path.write_text(json.dumps(doc))
    points, _ = perf_data.load(results)
    point = points[0]
    assert point.kv_cache_tokens == 0
    engine = perf_fit.engine_for(point)
    expected = plan(PlanInput(model=engine.model, gpu=engine.gpu, max_model_len=point.max_model_len,
                              gpu_memory_utilization=point.gpu_memory_utilization, max_num_seqs=point.max_num_seqs,
                              max_num_batched_tokens=point.max_num_batched_tokens)).kv_cache_tokens
    assert engine.kv_cache_tokens == expected > 0
