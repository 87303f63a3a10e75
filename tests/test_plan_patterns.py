"""The planner for serving patterns (kuberay_llm/plan/patterns.py): DP ranks each hold their own KV cache, the
experts shard over TP x DP, P/D needs two copies of the weights; the README's serving-patterns table is generated."""

from __future__ import annotations

import dataclasses

import pytest

from kuberay_llm import cli, toolchain
from kuberay_llm.plan import patterns
from kuberay_llm.plan.accounting import plan
from kuberay_llm.plan.catalog import find_model
from kuberay_llm.plan.weights import stage_weight_bytes

DEEPSEEK = "deepseek-ai/DeepSeek-R1"


@pytest.fixture(scope="module")
def plans():
    return {name: patterns.plan_patterns(name)[0] for name in patterns.README_OVERLAYS}


def test_expert_parallelism_moves_whole_experts_but_not_bytes():
    """256 experts over 16 ranks: 16 whole experts per rank weigh what a 1/16 slice of every expert weighs."""
    model = find_model(DEEPSEEK)
    assert stage_weight_bytes(model, 1, 1, 16, True) == pytest.approx(stage_weight_bytes(model, 1, 1, 16, False))
    # more ranks, fewer experts each; ranks beyond the experts hold one each
    assert stage_weight_bytes(model, 1, 1, 32, True)[0] < stage_weight_bytes(model, 1, 1, 16, True)[0]


def test_data_parallelism_shards_only_the_experts():
    dense = find_model("meta-llama/Llama-3.1-8B-Instruct")
    assert stage_weight_bytes(dense, 1, 1, 8, True) == stage_weight_bytes(dense, 1, 1)
    moe = find_model(DEEPSEEK)
    assert stage_weight_bytes(moe, 1, 1, 1, False) == stage_weight_bytes(moe, 1, 1)


def test_a_dp_overlay_is_its_ranks_times_one_rank(plans):
    dp = plans["large-dp-ep"]
    side = dp.serving
    inp = side.plan.inputs
    assert side.engines == inp.data_parallel_size and inp.expert_parallel
    assert dp.gpus == dp.gpus_in_cluster == side.engines * inp.tp * inp.pp
    assert side.kv_tokens == side.engines * side.plan.kv_cache_tokens
    for length in patterns.LENGTHS:
        assert side.concurrency(length) == pytest.approx(
            side.engines * plan(dataclasses.replace(inp, max_model_len=length)).max_concurrency)


def test_dp_ranks_hold_more_kv_than_tensor_parallel_on_the_same_gpus(plans):
    """MLA's KV cache is not split by TP: 8 TP ranks hold 8 copies of it, 16 DP ranks 16 different caches."""
    large, dp = plans["large"], plans["large-dp-ep"]
    assert large.gpus == dp.gpus
    assert dp.serving.weights_gib_per_gpu > large.serving.weights_gib_per_gpu
    assert dp.serving.kv_tokens > large.serving.kv_tokens
    assert dp.serving.concurrency(16384) > large.serving.concurrency(16384)


def test_pd_serves_from_decode_and_needs_two_copies(plans):
    pd = plans["large-pd"]
    assert [s.role for s in pd.sides] == ["prefill", "decode"]
    assert pd.serving.role == "decode"
    assert pd.gpus == sum(s.gpus for s in pd.sides) <= pd.gpus_in_cluster
    copy_gpus, result = patterns.smallest_copy(pd.serving)
    assert result.fits and result.max_concurrency >= 1
    smaller = dataclasses.replace(result.inputs, data_parallel_size=copy_gpus - 1)
    assert not (plan(smaller).fits and plan(smaller).max_concurrency >= 1)
    assert 2 * copy_gpus > plans["large"].gpus, "P/D would fit on large's GPUs"


def test_plan_prints_the_comparison_side_by_side(capsys):
    code = cli.main(["plan", "large-dp-ep", "--compare", "large"])
    out = capsys.readouterr().out
    assert code == 0, out
    header = next(line for line in out.splitlines() if line.startswith("overlay "))
    assert header.split()[1:] == ["large-dp-ep", "large"]
    for label in ("weights per GPU", "KV tokens", "concurrency at 16,384 tokens", "concurrency at 32,768 tokens"):
        assert label in out


def test_plan_of_a_pd_overlay_says_why_it_needs_its_gpus(capsys):
    code = cli.main(["plan", "large-pd"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "overlays/large-pd: one copy of deepseek-ai/DeepSeek-R1 with a KV cache for one 16,384-token request" in out


def test_readme_serving_patterns_table_is_generated():
    text = (toolchain.REPO_ROOT / "README.md").read_text()
    assert patterns.BEGIN in text and patterns.END in text, "README.md lost its serving-patterns markers"
    start = text.index(patterns.BEGIN)
    current = text[start:text.index(patterns.END, start) + len(patterns.END)]
    assert current == patterns.readme_block(), ("README serving-patterns table is stale: replace it with "
                                                "`python -m kuberay_llm.plan.patterns`")
