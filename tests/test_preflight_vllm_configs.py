"""Preflight's offline run of vLLM's own SchedulerConfig (preflight/vllm_configs.py): each case is the rendered small
overlay with engine_kwargs changed, validated as a manifest file; each asserts vLLM's message as preflight reports it.
Needs vLLM's CPU build (`make setup-local`)."""

from __future__ import annotations

import pytest

from preflight_cases import edit_serve_config, lines, run_cases
from kuberay_llm import render

pytest.importorskip("vllm.config")

KW = "serveConfigV2 llm_configs[0].engine_kwargs"
REFUSES = "vLLM's SchedulerConfig refuses it at start-up:"


def engine(**kwargs):
    return "small", lambda objects, rs: edit_serve_config(rs, lambda c, d: c["engine_kwargs"].update(kwargs))


CASES = {
    "no-chunked-prefill-short-budget": engine(max_num_batched_tokens=2048, enable_chunked_prefill=False),
    "no-chunked-prefill-long-budget": engine(max_num_batched_tokens=8192, enable_chunked_prefill=False),
    "chunked-prefill-short-budget": engine(max_num_batched_tokens=2048),
    "budget-below-max-num-seqs": engine(max_num_batched_tokens=32),
    "threshold-beyond-context": engine(long_prefill_token_threshold=9000),
    "budget-beyond-every-sequence": engine(max_num_batched_tokens=10 ** 7),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return run_cases(CASES, {"small": render.render_overlay("small").objects}, tmp_path_factory.mktemp("vllm"))


def test_batch_budget_below_the_context_without_chunked_prefill(results):
    assert lines(results, "no-chunked-prefill-short-budget", code=1) == [
        f"error: no-chunked-prefill-short-budget.yaml: RayService/llama-8b: {KW}.max_num_batched_tokens=2048: "
        f"{REFUSES} max_num_batched_tokens (2048) is smaller than max_model_len (8192). This effectively limits the "
        "maximum sequence length to max_num_batched_tokens and makes vLLM reject longer sequences. Please increase "
        "max_num_batched_tokens or decrease max_model_len; fix: raise max_num_batched_tokens to max_model_len or "
        "more, or remove enable_chunked_prefill: false (chunked prefill splits a long prompt over several steps)"]


@pytest.mark.parametrize("name", ["no-chunked-prefill-long-budget", "chunked-prefill-short-budget"])
def test_what_vllm_accepts_passes(results, name):
    assert lines(results, name, code=0) == []
    assert not any("SchedulerConfig" in line or "vLLM warns" in line for line in results[name][1])


def test_batch_budget_below_max_num_seqs(results):
    assert lines(results, "budget-below-max-num-seqs", code=1) == [
        f"error: budget-below-max-num-seqs.yaml: RayService/llama-8b: {KW}.max_num_batched_tokens=32: {REFUSES} "
        "max_num_batched_tokens (32) must be greater than or equal to max_num_seqs (64); fix: raise "
        "max_num_batched_tokens to max_num_seqs or more, or lower max_num_seqs"]


def test_long_prefill_threshold_beyond_the_context(results):
    assert lines(results, "threshold-beyond-context", code=1) == [
        f"error: threshold-beyond-context.yaml: RayService/llama-8b: {KW}.long_prefill_token_threshold=9000: "
        f"{REFUSES} long_prefill_token_threshold (9000) cannot be greater than the max_model_len (8192); fix: lower "
        "long_prefill_token_threshold to max_model_len or less"]


def test_vllms_own_warning_is_a_warning(results):
    assert [line for line in lines(results, "budget-beyond-every-sequence", "warning", code=0)
            if "vLLM warns" in line] == [
        f"warning: budget-beyond-every-sequence.yaml: RayService/llama-8b: {KW}.max_num_batched_tokens=10000000: vLLM "
        "warns at start-up: max_num_batched_tokens (10000000) exceeds max_num_seqs * max_model_len (524288). This may "
        "lead to unexpected behavior; fix: lower max_num_batched_tokens to max_num_seqs × max_model_len or less"]
