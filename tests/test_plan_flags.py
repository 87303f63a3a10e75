"""`kuberay-llm plan` flags: every numeric flag is range-checked, and a flag the named overlay would ignore is an
error (kuberay_llm/plan/flags.py). Each case asserts the exact one-line message and exit code 2 (usage)."""

import pytest

from kuberay_llm import cli

AD_HOC = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100-80GB"]


@pytest.mark.parametrize("flag, value, message", [
    ("--tp", "0", "error: --tp 0: must be at least 1\n"),
    ("--pp", "-2", "error: --pp -2: must be at least 1\n"),
    ("--max-model-len", "0", "error: --max-model-len 0: must be at least 1\n"),
    ("--max-num-seqs", "-5", "error: --max-num-seqs -5: must be at least 1\n"),
    ("--max-num-batched-tokens", "0", "error: --max-num-batched-tokens 0: must be at least 1\n"),
    ("--gpu-memory-utilization", "1.5", "error: --gpu-memory-utilization 1.5: must be a fraction in (0, 1], e.g. 0.9\n"),
    ("--gpu-memory-utilization", "0", "error: --gpu-memory-utilization 0.0: must be a fraction in (0, 1], e.g. 0.9\n"),
    ("--gpu-memory-utilization", "nan", "error: --gpu-memory-utilization nan: must be a fraction in (0, 1], e.g. 0.9\n"),
    ("--kv-cache-dtype", "fp4", "error: --kv-cache-dtype 'fp4': use one of auto, bfloat16, float16, fp8, "),
    ("--max-model-len", "200000", "error: --max-model-len 200000: meta-llama/Llama-3.1-8B-Instruct's context is "
                                  "131,072 tokens (vLLM refuses a longer max_model_len)\n"),
])
def test_out_of_range_flag_is_a_usage_error(flag, value, message, capsys):
    assert cli.main([*AD_HOC, flag, value]) == 2
    assert capsys.readouterr().err.startswith(message)


@pytest.mark.parametrize("flag, value, field", [
    ("--tp", "4", "tensor_parallel_size"),
    ("--max-model-len", "4096", "max_model_len"),
    ("--gpu-memory-utilization", "0.8", "gpu_memory_utilization"),
])
def test_a_flag_the_overlay_would_ignore_is_an_error(flag, value, field, capsys):
    assert cli.main(["plan", "large", flag, value]) == 2
    assert capsys.readouterr().err == (
        f"error: {flag} would be ignored: overlay large sets {field} in its serve config (only --gpu overrides an "
        "overlay); change the overlay's serve-config.yaml, or plan ad-hoc settings with --model\n")


def test_the_defaults_still_plan(capsys):
    assert cli.main(AD_HOC + ["--max-model-len", "8192"]) == 0
    assert "TP 1 x PP 1" in capsys.readouterr().out
