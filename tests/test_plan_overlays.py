"""The planner on rendered overlays, its CLI, and the findings it hands to the validator."""

import copy
import json

import pytest

from kuberay_llm import cli
from kuberay_llm.plan.overlay import llm_configs, rayservices
from kuberay_llm.preflight.capacity import check_capacity
from kuberay_llm.render import render_overlay


def _service(name):
    rendered = render_overlay(name)
    service = rayservices(rendered.objects)[0]
    return rendered.source, service, llm_configs(service, rendered.source)[0]


def test_large_overlay_json_has_per_stage_weights_and_the_binding_limit(capsys):
    assert cli.main(["plan", "large", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["gpu"] == "H100-80GB" and entry["gpus"] == 16
    assert len(entry["weights_gib_per_gpu"]) == 2
    assert entry["max_concurrency"] > entry["max_num_seqs"] == 40
    assert entry["binding_limit"] == "max_num_seqs"
    assert entry["kv_cache_tokens"] > 0


def test_medium_overlay_gpu_comes_from_accelerator_type(capsys):
    assert cli.main(["plan", "medium"]) == 0
    out = capsys.readouterr().out
    assert "GPU from accelerator_type: A100-40G" in out and "8 x A100-40GB" in out


def test_small_overlay_without_a_gpu_type_says_so_and_takes_gpu(capsys):
    assert cli.main(["plan", "small"]) == 0
    assert "not planned: no accelerator_type and no GPU nodeSelector: the GPU type is unknown (pass --gpu)" \
        in capsys.readouterr().out
    assert cli.main(["plan", "small", "--gpu", "L4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["gpu"] == "L4"


def test_cpu_overlay_is_not_planned(capsys):
    assert cli.main(["plan", "local-cpu"]) == 0
    assert "not planned: CPU-only" in capsys.readouterr().out


def test_gpu_from_node_selector_when_accelerator_type_is_absent():
    source, service, config = _service("medium")
    config = dict(config)
    config.pop("accelerator_type")
    from kuberay_llm.plan.overlay import gpu_shape
    assert gpu_shape(service, config).gpu.name == "A100-40GB"


def test_ad_hoc_json(capsys):
    assert cli.main(["plan", "--model", "deepseek-ai/DeepSeek-R1", "--gpu", "H100-80GB", "--tp", "8", "--pp", "2",
                     "--max-model-len", "32768", "--gpu-memory-utilization", "0.92", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"max_concurrency", "kv_cache_tokens", "weights_gib_per_gpu", "binding_limit"} <= set(out)


@pytest.mark.parametrize("argv, message", [
    (["plan", "--model", "acme/x", "--gpu", "L4"], "error: unknown model 'acme/x': the planner knows "),
    (["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "TPU"], "error: unknown GPU 'TPU': the planner knows "),
    (["plan", "--model", "Qwen/Qwen2.5-7B-Instruct"], "error: --model needs --gpu (e.g. --gpu H100-80GB)\n"),
    (["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "L4", "--tp", "3"],
     "error: Qwen/Qwen2.5-7B-Instruct: tensor_parallel_size 3 does not divide its 28 attention heads"),
    (["plan", "small", "--model", "Qwen/Qwen2.5-7B-Instruct"], "error: give an overlay or --model, not both\n"),
    (["plan", "nowhere"], "error: nowhere: not an overlay"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_no_overlay_and_no_model(capsys):
    assert cli.main(["plan"]) == 2
    assert capsys.readouterr().err.startswith("error: give an overlay (")


def test_weights_that_do_not_fit_exit_1(capsys):
    assert cli.main(["plan", "--model", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "L4"]) == 1
    assert "does not fit" in capsys.readouterr().out


def test_large_overlay_passes_the_capacity_check():
    assert check_capacity(*_service("large")) == []


def test_check_capacity_warns_when_max_num_seqs_leaves_kv_unused():
    source, service, config = _service("large")
    config = copy.deepcopy(config)
    config["engine_kwargs"]["max_num_seqs"] = 8
    [finding] = check_capacity(source, service, config)
    assert (finding.severity, finding.source, finding.obj, finding.field) == (
        "warning", "overlays/large", "RayService/deepseek-r1", "serveConfigV2 llm_configs[0].engine_kwargs.max_num_seqs")
    assert "memory is left unused" in finding.message and finding.fix


def test_check_capacity_errors_when_weights_do_not_fit():
    source, service, config = _service("large")
    config = copy.deepcopy(config)
    config["engine_kwargs"]["pipeline_parallel_size"] = 1
    [finding] = check_capacity(source, service, config)
    assert finding.severity == "error"
    assert finding.field == "serveConfigV2 llm_configs[0].engine_kwargs.tensor_parallel_size"
    assert finding.message.startswith("deepseek-ai/DeepSeek-R1 does not fit on H100-80GB")


def test_check_capacity_warns_when_kv_holds_fewer_requests_than_max_num_seqs():
    source, service, config = _service("medium")
    config = copy.deepcopy(config)
    config["engine_kwargs"]["max_num_seqs"] = 64
    [finding] = check_capacity(source, service, config, index=0)
    assert finding.severity == "warning" and "fewer than max_num_seqs 64" in finding.message


def test_check_capacity_leaves_impossible_tp_to_the_model_facts_rule():
    """One finding per mistake: preflight/model_facts.py reports it (tests/test_preflight_model_facts.py)."""
    source, service, config = _service("medium")
    config = copy.deepcopy(config)
    config["engine_kwargs"]["tensor_parallel_size"] = 3
    assert check_capacity(source, service, config) == []


def test_check_capacity_is_silent_when_it_cannot_judge():
    source, service, config = _service("small")
    assert check_capacity(source, service, config) == []  # no GPU type
