"""`kuberay-llm size`: every listed configuration meets the targets at the asked rate, sorted by cost; the rejected
name their binding constraint; bad input is a usage error naming the flag; under 2 s without vLLM or torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from fast_budget import slowdown
from kuberay_llm import cli, exitcodes
from kuberay_llm.plan import perf_fit
from kuberay_llm.plan.catalog import find_gpu, find_model, gpus
from kuberay_llm.size import search

pytestmark = pytest.mark.fast

LLAMA = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--input-len", "2000", "--output-len", "300"]
TARGETS = ["--ttft-p90", "1", "--tpot-p50", "30ms", "--rps", "20"]


def size(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(["size", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def size_json(capsys, *args) -> dict:
    code, out, err = size(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_every_feasible_configuration_meets_the_targets_with_the_replicas_it_names(capsys):
    doc = size_json(capsys, *LLAMA, *TARGETS)
    assert doc["feasible"]
    for row in doc["feasible"]:
        assert row["ttft_p90_s"] <= 1.0 and row["tpot_p50_s"] <= 0.030
        assert row["replicas"] * row["max_rps_per_replica"] >= 20 * (1 - 1e-6)
        assert (row["replicas"] - 1) * row["max_rps_per_replica"] < 20  # no replica more than needed
        assert row["gpus"] == row["replicas"] * row["tensor_parallel_size"]
        assert row["headroom"] == pytest.approx(row["replicas"] * row["max_rps_per_replica"] / 20 - 1, abs=1e-3)


def test_priced_configurations_sort_by_cost_per_hour_and_unpriced_ones_after_by_gpu_count(capsys):
    doc = size_json(capsys, *LLAMA, *TARGETS, "--price", "H100-80GB=3.10", "--price", "L40S=1.20")
    rows = doc["feasible"]
    priced = [r for r in rows if r["usd_per_hour"] is not None]
    assert {r["gpu"] for r in priced} == {"H100-80GB", "L40S"}
    assert rows[:len(priced)] == priced
    assert [r["usd_per_hour"] for r in priced] == sorted(r["usd_per_hour"] for r in priced)
    for r in priced:
        assert r["usd_per_hour"] == pytest.approx(r["gpus"] * {"H100-80GB": 3.10, "L40S": 1.20}[r["gpu"]])
    unpriced = rows[len(priced):]
    assert [r["gpus"] for r in unpriced] == sorted(r["gpus"] for r in unpriced)


def test_without_prices_the_output_says_so_and_sorts_by_gpu_count(capsys):
    code, out, _ = size(capsys, *LLAMA, *TARGETS)
    assert code == 0
    assert "prices unknown (pass --price GPU=USD/h): sorted by GPU count" in out


def test_a_slower_target_never_needs_more_gpus():
    model = find_model("meta-llama/Llama-3.1-8B-Instruct")
    fit = perf_fit.committed()
    serve = search.ServeOverhead(fit["ray_serve"]["ttft_s"], fit["ray_serve"]["tpot_factor"])
    h100 = [find_gpu("H100-80GB")]

    def fewest(tpot):
        feasible, _ = search.search(model, search.Targets(2000, 300, 1.0, tpot, 20), h100, {}, perf_fit.constants(),
                                    serve)
        return min(c.gpus for c in feasible)

    assert fewest(0.060) <= fewest(0.030) <= fewest(0.020)


def test_rejected_configurations_name_the_binding_constraint(capsys):
    doc = size_json(capsys, "--model", "Qwen/Qwen2.5-72B-Instruct", "--input-len", "512", "--output-len", "128",
                    "--ttft-p90", "2", "--tpot-p50", "0.1", "--rps", "1", "--gpu", "L4")
    why = {r["tensor_parallel_size"]: r["why"] for r in doc["rejected"]}
    # 72.7B parameters in bf16 = 135 GiB: 4 x 22 GiB L4s hold no copy, 8 do
    for tp in (1, 2, 4):
        assert why[tp].startswith("weights do not fit: "), why[tp]
    assert [r["tensor_parallel_size"] for r in doc["feasible"]] == [8]


def test_a_target_no_gpu_meets_says_so_and_exits_1(capsys):
    code, out, _ = size(capsys, *LLAMA, "--ttft-p90", "1", "--tpot-p50", "1ms", "--rps", "20")
    assert code == exitcodes.FAILED
    assert "no configuration meets the targets" in out
    assert "TPOT p50" in out and "with no load" in out


def test_the_json_names_the_cold_start_of_the_first_configuration(capsys):
    doc = size_json(capsys, *LLAMA, *TARGETS, "--gpu", "H100-80GB")
    cold = doc["cold_start"]
    assert cold["seconds"] == pytest.approx(sum(t["seconds"] for t in cold["terms"]), abs=0.5)
    assert [t["name"] for t in cold["terms"]][0] == "image pull"


@pytest.mark.parametrize("args, message", [
    (["--rps", "0"], "--rps 0: must be a positive number of requests per second, e.g. --rps 20"),
    (["--rps", "nan"], "--rps nan: must be a positive number of requests per second, e.g. --rps 20"),
    (["--ttft-p90", "soon"], "--ttft-p90 'soon': give a positive duration in seconds, e.g. --ttft-p90 0.5 or "
                             "--ttft-p90 500ms"),
    (["--tpot-p50", "0"], "--tpot-p50 '0': give a positive duration in seconds, e.g. --tpot-p50 0.5 or "
                          "--tpot-p50 500ms"),
    (["--input-len", "0"], "--input-len 0: must be at least 1 token"),
    (["--output-len", "-3"], "--output-len -3: must be at least 1 token"),
    (["--price", "H100-80GB"], "--price 'H100-80GB': give GPU=USD per GPU-hour, e.g. --price H100-80GB=3.10"),
    (["--price", "H100-80GB=free"], "--price 'H100-80GB=free': give GPU=USD per GPU-hour, e.g. --price "
                                    "H100-80GB=3.10"),
    (["--price", "H100-80GB=-1"], "--price 'H100-80GB=-1': give GPU=USD per GPU-hour, e.g. --price H100-80GB=3.10"),
    (["--price", "V100=1"], "--price 'V100=1': unknown GPU 'V100': the planner knows " + ", ".join(gpus())),
    (["--gpu", "V100"], "--gpu V100: unknown GPU 'V100': the planner knows " + ", ".join(gpus())),
    (["--input-len", "131000"], "--input-len 131000 + --output-len 300 = 131300 tokens exceed "
                                "meta-llama/Llama-3.1-8B-Instruct's context of 131,072 tokens: shorten them"),
])
def test_bad_input_is_a_usage_error_naming_the_flag_and_the_fix(capsys, args, message):
    flags = LLAMA + TARGETS
    for i in range(0, len(args), 2):  # the bad flag replaces the good one
        if args[i] in flags:
            flags = flags[:flags.index(args[i])] + flags[flags.index(args[i]) + 2:]
    code, out, err = size(capsys, *flags, *args)
    assert code == exitcodes.USAGE
    assert err.strip() == f"error: {message}"
    assert "Traceback" not in out + err


def test_an_unknown_model_is_a_usage_error(capsys):
    code, _, err = size(capsys, "--model", "acme/unknown-7b", "--input-len", "1", "--output-len", "1", *TARGETS)
    assert code == exitcodes.USAGE
    assert err.startswith("error: unknown model 'acme/unknown-7b': the planner knows ")


def test_it_answers_in_under_2_seconds_without_importing_vllm_or_torch():
    probe = ("import sys, time; t = time.time(); from kuberay_llm import cli; "
             f"code = cli.main({['size', *LLAMA, *TARGETS, '--json']!r}); "
             "sys.stderr.write(repr((code, time.time() - t, sorted(m for m in ('vllm', 'torch', 'ray') "
             "if m in sys.modules))))")
    start = time.time()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    wall = time.time() - start
    code, seconds, heavy = eval(done.stderr.strip().splitlines()[-1])
    assert code == 0 and heavy == []
    limit = 2.0 * slowdown()  # KUBERAY_LLM_TEST_SLOWDOWN on a loaded machine, as for the fast budget
    assert seconds < limit and wall < limit + 1.5  # the interpreter's own start on top
