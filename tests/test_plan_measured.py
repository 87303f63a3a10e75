"""The planner against vLLM's own start-up accounting measured on a GPU (scripts/kuberay_llm/data/measured-*.yaml,
written by bench/gpu/to_data.py from bench/gpu/kv_sweep.py runs): held-out residuals, the fit, provenance."""

import importlib.util
import math

import pytest

from kuberay_llm import toolchain
from kuberay_llm.plan import bench, overhead
from kuberay_llm.plan.catalog import find_gpu, find_model

POINTS = bench.measured_points()
HELD_OUT = [p for p in POINTS if not bench.is_fit_point(p)]
GiB = 1024**3


def _vllm_log():
    path = toolchain.REPO_ROOT / "bench" / "gpu" / "vllm_log.py"
    spec = importlib.util.spec_from_file_location("vllm_log", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_points_exist_and_leave_held_out_points_of_every_measured_model():
    labels = {p["label"] for p in POINTS}
    assert set(overhead.FIT_POINTS) <= labels
    assert {p["model"] for p in HELD_OUT} == {p["model"] for p in POINTS}, "a model with no held-out point"


@pytest.mark.parametrize("point", HELD_OUT, ids=lambda p: p["label"])
def test_held_out_concurrency_within_the_goal(point):
    assert abs(bench.point_residual(point)) <= bench.HELD_OUT_TOLERANCE


def test_fitted_constants_are_what_the_fit_points_give():
    assert bench.constant_drift() == []


def test_drift_is_reported_when_a_constant_is_edited(monkeypatch):
    monkeypatch.setattr(overhead, "NON_TORCH_BYTES", overhead.NON_TORCH_BYTES + 0.01 * GiB)
    drift = bench.constant_drift()
    assert len(drift) == 1 and drift[0].startswith("overhead.NON_TORCH_BYTES is 0.2333 GiB but FIT_POINTS give 0.2233")


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p["label"])
def test_weights_match_what_vllm_allocated(point):
    # the weights are computed from the model's shapes (nothing fitted): vLLM logs them to 0.01 GiB
    assert abs(bench.weights_residual(point)) < 0.005


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p["label"])
def test_numbers_are_the_ones_in_the_verbatim_log_lines(point):
    parsed = _vllm_log().parse("\\n".join(point["log"]))
    for key, value in point["measured"].items():
        if key == "cudagraph_estimate_gib" and point["model_runner"] == "V2":
            assert value == 0.0 and key not in parsed  # the V2 runner logs no estimate: it subtracts none
            continue
        assert parsed[key] == value, key
    assert parsed["max_model_len"] == point["settings"]["max_model_len"]


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p["label"])
def test_kv_accounting_adds_up(point):
    # vLLM: kv = ceil(utilization x total) - weights - activation - non-torch - CUDA graph estimate
    m, s = point["measured"], point["settings"]
    total = find_gpu(point["gpu"]).total_gib
    kv = (s["gpu_memory_utilization"] * total - m["weights_gib"] - m["peak_activation_gib"] - m["non_torch_gib"]
          - m["cudagraph_estimate_gib"])
    assert kv == pytest.approx(m["kv_cache_gib"], abs=0.04)
    assert m["kv_cache_tokens"] / s["max_model_len"] == pytest.approx(m["max_concurrency"], abs=0.006)


def test_provenance_names_machine_software_and_command():
    import yaml

    for path in sorted(bench.DATA_DIR.glob("measured-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        prov = doc["provenance"]
        assert prov["machine"]["gpu"] and prov["machine"]["driver"] and prov["software"]["vllm"]
        assert prov["software"]["torch"] and prov["date_utc"]
        for point in doc["points"]:
            assert point["command"].startswith("vllm serve ") and "--load-format dummy" in point["command"]
            assert math.isfinite(point["measured"]["max_concurrency"])


@pytest.mark.parametrize("point", [p for p in POINTS if p.get("cudagraph_modes")], ids=lambda p: p["label"])
def test_capture_sizes_give_the_graph_counts_vllm_logged(point):
    s = point["settings"]
    sizes = overhead.capture_sizes(s["max_num_seqs"], s["max_num_batched_tokens"])
    modes = point["cudagraph_modes"]
    assert modes["PIECEWISE"]["graphs"] == len(sizes)
    assert modes["FULL"]["graphs"] == len([x for x in sizes if x <= s["max_num_seqs"]])


def test_cuda_graph_term_follows_each_vllm_version_s_model_runner():
    llama, mixtral = find_model("meta-llama/Llama-3.1-8B-Instruct"), find_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    dsv2 = find_model("deepseek-ai/DeepSeek-V2-Lite-Chat")
    assert overhead.cuda_graph_bytes(llama, 64, 8192, "0.26.0") == 0  # V2 runner in 0.26
    assert overhead.cuda_graph_bytes(dsv2, 64, 8192, "0.26.0") == 0   # DeepseekV2ForCausalLM: V2 runner too
    assert overhead.cuda_graph_bytes(mixtral, 256, 8192, "0.26.0") > 0
    assert overhead.cuda_graph_bytes(llama, 64, 8192, "0.29.0") == overhead.cuda_graph_bytes(mixtral, 64, 8192, "0.26.0")
