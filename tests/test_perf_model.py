"""The performance model (kuberay_llm.plan.perf) against hand arithmetic and the behaviour vLLM's scheduler has:
one request's TTFT is its prefill step, TPOT its decode step; batches are capped by max_num_seqs and by the KV
cache; a prompt longer than max_num_batched_tokens takes that many chunks; open-loop queues grow with the rate."""

from __future__ import annotations

import dataclasses
import math

import pytest

from kuberay_llm.errors import UserError
from kuberay_llm.plan import perf
from kuberay_llm.plan.catalog import find_gpu, find_model

pytestmark = pytest.mark.fast

# Round numbers, not the fitted ones: the tests check the model's arithmetic, which any constants exercise.
CONSTANTS = perf.Constants(compute_efficiency=0.5, bandwidth_efficiency=0.8, step_overhead_s=0.002,
                           request_overhead_s=0.01)
LLAMA = find_model("meta-llama/Llama-3.1-8B-Instruct")
H100 = find_gpu("H100-80GB")


def engine(**changes) -> perf.Engine:
    base = perf.Engine(model=LLAMA, gpu=H100, max_num_seqs=256, max_num_batched_tokens=8192, kv_cache_tokens=400_000)
    return dataclasses.replace(base, **changes)


def test_one_request_ttft_is_the_overhead_plus_its_prefill_step_and_tpot_its_decode_steps():
    e = engine()
    result = perf.closed_loop(e, CONSTANTS, concurrency=1, input_len=512, output_len=65, num_prompts=3)
    prefill = perf.step_seconds(e, CONSTANTS, prefill_tokens=512, prefill_pairs=512 * 513 / 2, sampled=1)
    decodes = [perf.step_seconds(e, CONSTANTS, decodes=1, decode_context=512 + k) for k in range(1, 65)]
    assert result.ttft_p50_s == pytest.approx(CONSTANTS.request_overhead_s + prefill, rel=1e-9)
    assert result.tpot_p50_s == pytest.approx(sum(decodes) / 64, rel=1e-9)
    per_request = CONSTANTS.request_overhead_s + prefill + sum(decodes)
    assert result.output_tokens_per_s == pytest.approx(65 / per_request, rel=1e-9)


def test_a_decode_step_reads_the_weights_at_the_fitted_bandwidth():
    """Dense bf16: 2 bytes per parameter; at batch 1 the weights dominate the step."""
    step = perf.step_seconds(engine(), CONSTANTS, decodes=1, decode_context=1)
    weights_s = 2 * LLAMA.parameters / (H100.memory_tbps * 1e12 * CONSTANTS.bandwidth_efficiency)
    assert weights_s < step - CONSTANTS.step_overhead_s < 1.02 * weights_s


def test_a_full_prefill_chunk_runs_at_the_fitted_fraction_of_the_bf16_peak():
    chunk = 8192
    step = perf.step_seconds(engine(), CONSTANTS, prefill_tokens=chunk, sampled=1)
    # every parameter but the embedding and lm_head matrices multiplies each token
    multiplied = LLAMA.parameters - 2 * LLAMA.vocab_size * LLAMA.hidden_size
    linear_s = 2 * multiplied * chunk / (H100.bf16_dense_tflops * 1e12 * CONSTANTS.compute_efficiency)
    assert linear_s < step < 1.1 * linear_s


def test_throughput_and_tpot_grow_with_concurrency_and_saturate():
    levels = [perf.closed_loop(engine(), CONSTANTS, concurrency=c, input_len=512, output_len=256, num_prompts=2 * c)
              for c in (1, 8, 64, 256)]
    tput = [r.output_tokens_per_s for r in levels]
    tpot = [r.tpot_p50_s for r in levels]
    assert tput == sorted(tput) and tpot == sorted(tpot)
    assert tput[1] / tput[0] > 6          # batch 8 costs little more than batch 1: memory-bound decode
    assert tput[3] / tput[2] < tput[1] / tput[0]


def test_max_num_seqs_caps_the_batch_and_the_rest_queue():
    capped = engine(max_num_seqs=8)
    eight = perf.closed_loop(capped, CONSTANTS, concurrency=8, input_len=512, output_len=128, num_prompts=64)
    sixty_four = perf.closed_loop(capped, CONSTANTS, concurrency=64, input_len=512, output_len=128, num_prompts=64)
    assert sixty_four.output_tokens_per_s == pytest.approx(eight.output_tokens_per_s, rel=0.05)
    assert sixty_four.tpot_p50_s == pytest.approx(eight.tpot_p50_s, rel=0.05)
    assert sixty_four.ttft_p90_s > 5 * eight.ttft_p90_s  # waiting for a free slot


def test_the_kv_cache_caps_the_batch_and_preemption_costs_recomputation():
    """A cache of exactly 8 requests of 512 + 128 tokens: vLLM admits on the prompt (up to 10 prompts of 512), then
    preempts as outputs grow, so it does no better than max_num_seqs 8 and the batch stays within the cache."""
    kv_bound = engine(kv_cache_tokens=8 * 640)
    seq_bound = engine(max_num_seqs=8)
    assert perf.request_capacity(kv_bound, 512, 128) == 8
    a = perf.closed_loop(kv_bound, CONSTANTS, concurrency=32, input_len=512, output_len=128, num_prompts=64)
    b = perf.closed_loop(seq_bound, CONSTANTS, concurrency=32, input_len=512, output_len=128, num_prompts=64)
    assert 0.5 * b.output_tokens_per_s < a.output_tokens_per_s <= b.output_tokens_per_s
    assert a.batch <= 8 * 640 / 512


def test_a_prompt_longer_than_the_token_budget_is_prefilled_in_chunks():
    small_budget = engine(max_num_batched_tokens=1024)
    result = perf.closed_loop(small_budget, CONSTANTS, concurrency=1, input_len=4096, output_len=2, num_prompts=1)
    chunks = [perf.step_seconds(small_budget, CONSTANTS, prefill_tokens=1024, prefill_context=1024 * k,
                                prefill_pairs=1024 * (1024 * k + 1025 / 2), sampled=1 if k == 3 else 0)
              for k in range(4)]
    assert result.ttft_p50_s == pytest.approx(CONSTANTS.request_overhead_s + sum(chunks), rel=1e-9)


def test_moe_decode_reads_only_the_experts_its_tokens_route_to():
    mixtral = find_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    e = engine(model=mixtral, gpu=find_gpu("H200"))
    one = perf.step_seconds(e, CONSTANTS, decodes=1, decode_context=1)
    many = perf.step_seconds(e, CONSTANTS, decodes=64, decode_context=64)
    # 2 of 8 experts per token: batch 1 reads about a third of the 47B parameters, batch 64 nearly all of them
    assert 2.2 < many / one < 3.5


def test_open_loop_at_a_trickle_is_one_request_alone():
    e = engine()
    alone = perf.closed_loop(e, CONSTANTS, concurrency=1, input_len=512, output_len=256, num_prompts=1)
    trickle = perf.open_loop(e, CONSTANTS, rate=1e-6, input_len=512, output_len=256)
    assert trickle.tpot_p50_s == pytest.approx(alone.tpot_p50_s, rel=0.05)
    assert trickle.ttft_p90_s == pytest.approx(alone.ttft_p90_s, rel=0.25)


def test_open_loop_latency_grows_with_the_rate_until_a_limit_binds():
    e = engine(max_num_seqs=64)
    results = [perf.open_loop(e, CONSTANTS, rate=r, input_len=512, output_len=256) for r in (1, 5, 10, 20)]
    assert [r.tpot_p50_s for r in results] == sorted(r.tpot_p50_s for r in results)
    assert [r.ttft_p90_s for r in results] == sorted(r.ttft_p90_s for r in results)
    overloaded = perf.open_loop(e, CONSTANTS, rate=1000, input_len=512, output_len=256)
    assert overloaded.binding and math.isinf(overloaded.ttft_p90_s)


def test_percentile_is_numpys_linear_interpolation():
    assert perf.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert perf.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)


def test_a_gpu_without_peak_figures_is_refused_naming_the_data_file():
    unknown = dataclasses.replace(H100, name="X1", bf16_dense_tflops=0.0)
    with pytest.raises(UserError) as err:
        perf.step_seconds(engine(gpu=unknown), CONSTANTS, decodes=1)
    assert str(err.value) == ("X1: no peak BF16 TFLOPS / memory bandwidth in scripts/kuberay_llm/data/gpus.yaml "
                              "(add the data sheet's figures)")


def test_bad_lengths_and_an_empty_cache_are_refused():
    with pytest.raises(UserError) as err:
        perf.closed_loop(engine(), CONSTANTS, concurrency=1, input_len=0, output_len=1)
    assert str(err.value) == "input_len, output_len and concurrency must be at least 1"
    with pytest.raises(UserError) as err:
        perf.closed_loop(engine(kv_cache_tokens=100), CONSTANTS, concurrency=1, input_len=512, output_len=64)
    assert str(err.value) == ("meta-llama/Llama-3.1-8B-Instruct on 1 x H100-80GB: the KV cache holds no request of "
                              "576 tokens")
    with pytest.raises(UserError) as err:
        perf.open_loop(engine(), CONSTANTS, rate=0, input_len=512, output_len=64)
    assert str(err.value) == "the request rate must be positive"
