"""vLLM's own check of engine_kwargs (kuberay_llm.vllm_check) against the installed vLLM (make setup-local)."""

from __future__ import annotations

import os

import pytest

from kuberay_llm import vllm_check
from kuberay_llm.local.serve_config import llm_configs_of, serve_config_of
from kuberay_llm.render import overlay_names, render_overlay

if not vllm_check.vllm_available():
    pytest.fail("vLLM is not installed in this environment: run `make setup-local`", pytrace=False)


def problems(**engine_kwargs) -> list[str]:
    return vllm_check.check_engine_kwargs({"engine_kwargs": engine_kwargs})


@pytest.mark.parametrize("overlay", overlay_names())
def test_every_overlay_has_engine_kwargs_vllm_accepts(overlay):
    _, config = serve_config_of(render_overlay(overlay))
    for app in config["applications"]:
        for llm_config in llm_configs_of(app):
            assert vllm_check.check_engine_kwargs(llm_config) == []


def test_misspelled_name_suggests_the_real_one():
    assert problems(tensor_paralel_size=8) == [
        f"engine_kwargs.tensor_paralel_size: not a vLLM engine argument (vLLM {vllm_check._vllm_version()}); "
        "did you mean tensor_parallel_size?"]


def test_unrelated_unknown_name_says_remove_it():
    [problem] = problems(make_it_fast=True)
    assert problem.startswith("engine_kwargs.make_it_fast: not a vLLM engine argument")
    assert problem.endswith("remove it (see `vllm serve --help` for the engine args)")


@pytest.mark.parametrize("name, value, expected", [
    ("tensor_parallel_size", "8", "engine_kwargs.tensor_parallel_size: '8' is not a valid int"),
    ("tensor_parallel_size", 2.5, "engine_kwargs.tensor_parallel_size: 2.5 is not a valid int"),
    ("enable_prefix_caching", "yes", "engine_kwargs.enable_prefix_caching: 'yes' is not a valid bool"),
    ("dtype", "float64", "engine_kwargs.dtype: 'float64' is not a valid choice"),
    ("max_model_len", "32k", "engine_kwargs.max_model_len: '32k' is not a valid int"),
])
def test_wrong_type_is_reported_with_the_expected_type(name, value, expected):
    [problem] = problems(**{name: value})
    assert problem.startswith(expected)
    assert problem.endswith("; give a value of that type")


@pytest.mark.parametrize("name, value, bound", [
    ("gpu_memory_utilization", 1.5, "less than or equal to 1"),
    ("gpu_memory_utilization", 0, "greater than 0"),
    ("max_num_seqs", 0, "greater than or equal to 1"),
])
def test_out_of_range_value_is_reported(name, value, bound):
    [problem] = problems(**{name: value})
    assert problem == f"engine_kwargs.{name}: {value!r} is out of range (input should be {bound}); use a value vLLM accepts"


def test_nested_config_mapping_is_checked_against_its_vllm_dataclass():
    assert problems(kv_transfer_config={"kv_connector": "NixlConnector", "kv_role": "kv_both"}) == []
    [problem] = problems(kv_transfer_config={"kv_connector": "NixlConnector", "kv_role": "both"})
    assert "'kv_producer', 'kv_both' or 'kv_consumer'" in problem
    [problem] = problems(compilation_config={"no_such_option": 1})
    assert problem.startswith("engine_kwargs.compilation_config:") and "no_such_option" in problem


def test_unknown_reasoning_parser_lists_the_known_ones():
    assert problems(reasoning_parser="deepseek_r1") == []
    [problem] = problems(reasoning_parser="deepseek-r1")
    assert problem.startswith("engine_kwargs.reasoning_parser: 'deepseek-r1' is not a vLLM reasoning parser; use one of")
    assert "deepseek_r1" in problem


def test_model_and_served_model_name_are_ray_s_to_set():
    assert problems(model="x", served_model_name=["y"]) == [
        "engine_kwargs.model: Ray Serve LLM sets it; set model_loading_config.model_source instead",
        "engine_kwargs.served_model_name: Ray Serve LLM sets it; set model_loading_config.model_id instead"]


def test_valid_values_pass():
    assert problems(tensor_parallel_size=8, pipeline_parallel_size=2, gpu_memory_utilization=0.92, dtype="auto",
                    max_num_seqs=40, max_model_len=16384, enable_chunked_prefill=True, enable_prefix_caching=True,
                    kv_cache_memory_bytes=2**28) == []


def test_no_engine_kwargs_no_problems():
    assert vllm_check.check_engine_kwargs({}) == []


@pytest.mark.slow  # two fresh imports of vLLM and Ray
def test_the_checks_leave_no_logging_switch_behind_for_processes_started_later(monkeypatch):
    """The imports for checking quieten vLLM only while they run: a `local` Ray head started afterwards from the
    same process must log the engine's start-up lines (harness/startup.py reads them)."""
    import subprocess
    import sys

    code = ("import os\nfrom kuberay_llm import vllm_check\nfrom kuberay_llm.preflight import serve_config\n"
            "from kuberay_llm.preflight import vllm_configs\n"
            "vllm_check._fields(); serve_config._ray_models(); vllm_configs.scheduler_problems({}, 2048)\n"
            "print(sorted(k for k in os.environ if k in ('VLLM_LOGGING_LEVEL', 'VLLM_CONFIGURE_LOGGING')))")
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_LOGGING_LEVEL", "VLLM_CONFIGURE_LOGGING")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    env["VLLM_LOGGING_LEVEL"] = "DEBUG"  # a user's own setting stays
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "['VLLM_LOGGING_LEVEL']"
