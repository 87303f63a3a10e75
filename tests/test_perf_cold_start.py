"""The cold-start estimate: a sum of named terms whose inputs are the model's bytes, where model_source points, and
the measured starts; each measured start is checked against the others only."""

from __future__ import annotations

import json

import pytest

from kuberay_llm import cli
from kuberay_llm.plan import coldstart, perf_data, perf_fit
from kuberay_llm.plan.catalog import find_gpu, find_model
from kuberay_llm.plan.weights import stage_weight_bytes

pytestmark = pytest.mark.fast

LLAMA = find_model("meta-llama/Llama-3.1-8B-Instruct")
GiB = 1024**3


def terms(cold) -> dict[str, float]:
    return {t.name: t.seconds for t in cold.terms}


def test_the_total_is_the_sum_of_its_named_terms():
    cold = coldstart.predict(LLAMA, find_gpu("H100-80GB"), tp=1, pp=1, model_source=LLAMA.name)
    assert list(terms(cold)) == ["image pull", "weights download", "weights load", "engine start-up",
                                 "Ray + KubeRay + Serve"]
    assert cold.seconds == pytest.approx(sum(terms(cold).values()))
    assert cold.lines()[0].startswith(f"predicted cold start, apply -> HEALTHY: {cold.seconds:.0f} s")


def test_the_download_scales_with_the_checkpoint_and_the_storage_it_comes_from():
    gpu = find_gpu("H100-80GB")
    speeds = coldstart.assumptions()["download_gib_per_s"]
    checkpoint_gib = stage_weight_bytes(LLAMA, 1, 1)[0] / GiB
    for source, kind in ((LLAMA.name, "huggingface"), ("s3://bucket/llama", "s3"), ("gs://bucket/llama", "gs")):
        cold = coldstart.predict(LLAMA, gpu, tp=1, pp=1, model_source=source)
        assert terms(cold)["weights download"] == pytest.approx(checkpoint_gib / speeds[kind])
    local = coldstart.predict(LLAMA, gpu, tp=1, pp=1, model_source="/models/llama")
    assert terms(local)["weights download"] == 0
    dummy = coldstart.predict(LLAMA, gpu, tp=1, pp=1, model_source=LLAMA.name, load_format="dummy")
    assert terms(dummy)["weights download"] == 0 and terms(dummy)["weights load"] < terms(local)["weights load"]


def test_the_engine_start_up_is_the_measured_gpus_own_else_the_median_of_all():
    starts = perf_data.load()[1]
    standalone = [s for s in starts if s.kind == "vllm"]
    fit = perf_fit.committed()
    for gpu_name in {s.gpu for s in standalone}:
        own = sorted(s.seconds - s.load_s for s in standalone if s.gpu == gpu_name)
        cold = coldstart.predict(LLAMA, find_gpu(gpu_name), tp=1, pp=1, model_source=LLAMA.name, fit=fit)
        assert own[0] * 0.995 <= terms(cold)["engine start-up"] <= own[-1] * 1.005  # 3 significant digits kept
    unmeasured = next(g for g in ("L4", "A10G", "L40S") if g not in {s.gpu for s in standalone})
    cold = coldstart.predict(LLAMA, find_gpu(unmeasured), tp=1, pp=1, model_source=LLAMA.name, fit=fit)
    every = sorted(s.seconds - s.load_s for s in standalone)
    assert every[0] * 0.995 <= terms(cold)["engine start-up"] <= every[-1] * 1.005


def test_a_measured_start_is_predicted_without_itself():
    starts = perf_data.load()[1]
    start = next(s for s in starts if s.kind == "cluster")
    changed = [perf_data.Start(**{**s.__dict__, "seconds": s.seconds * 10}) if s is start else s for s in starts]
    assert coldstart.leave_one_out(changed, changed[starts.index(start)]) == \
        pytest.approx(coldstart.leave_one_out(starts, start))


def test_plan_prints_and_reports_each_tiers_cold_start(capsys):
    assert cli.main(["plan", "small", "--gpu", "H100-80GB"]) == 0
    out = capsys.readouterr().out
    assert "  predicted cold start, apply -> HEALTHY: " in out
    for name in ("image pull", "weights download", "weights load", "engine start-up", "Ray + KubeRay + Serve"):
        assert f"    {name} " in out
    assert cli.main(["plan", "small", "--gpu", "H100-80GB", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    cold = entry["cold_start"]
    assert cold["seconds"] == pytest.approx(sum(t["seconds"] for t in cold["terms"]), abs=0.5)
