"""The planner's arithmetic: catalog, sharding, vLLM's KV accounting, and the published figures."""

import pytest

from kuberay_llm.errors import UserError
from kuberay_llm.plan import bench
from kuberay_llm.plan.accounting import PlanInput, kv_bytes_per_token_per_layer, plan
from kuberay_llm.plan.catalog import find_gpu, find_model, model_names
from kuberay_llm.plan.weights import pp_partition, stage_weight_bytes, total_parameters

GiB = 1024**3


@pytest.mark.parametrize("name", model_names())
def test_per_layer_arithmetic_adds_up_to_the_published_parameter_count(name):
    model = find_model(name)
    assert total_parameters(model) == pytest.approx(model.parameters, rel=max(1e-6, model.parameters_tolerance))


def test_mirror_ids_resolve_to_the_upstream_facts():
    assert find_model("unsloth/Meta-Llama-3.1-70B-Instruct") is find_model("meta-llama/Llama-3.1-70B-Instruct")
    assert find_model("unsloth/Meta-Llama-3.1-8B-Instruct").name == "meta-llama/Llama-3.1-8B-Instruct"


def test_gpu_found_by_catalog_name_ray_type_and_node_label():
    assert find_gpu("A100-40G") is find_gpu("A100-40GB") is find_gpu("nvidia-tesla-a100")
    assert find_gpu("NVIDIA-H100-80GB-HBM3").name == "H100-80GB"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        find_model("acme/NoSuchModel")
    assert str(err.value) == ("unknown model 'acme/NoSuchModel': the planner knows " + ", ".join(model_names())
                              + " (add it to scripts/kuberay_llm/data/models.yaml from its config.json)")


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        find_gpu("V100")
    assert str(err.value) == "unknown GPU 'V100': the planner knows H100-80GB, H200, A100-40GB, A100-80GB, L4, L40S, A10G, B200"


def test_pipeline_stages_split_like_vllm_with_the_last_stage_spared():
    assert pp_partition(61, 2) == [31, 30]
    assert pp_partition(61, 4) == [15, 15, 16, 15]
    assert pp_partition(80, 1) == [80]


def test_mla_kv_is_not_split_by_tp_but_gqa_kv_heads_are_with_at_least_one():
    r1, llama = find_model("deepseek-ai/DeepSeek-R1"), find_model("meta-llama/Llama-3.1-70B-Instruct")
    assert kv_bytes_per_token_per_layer(r1, 1, "auto") == kv_bytes_per_token_per_layer(r1, 8, "auto") == 576 * 2
    assert kv_bytes_per_token_per_layer(llama, 2, "auto") == 2 * 4 * 128 * 2
    assert kv_bytes_per_token_per_layer(llama, 16, "auto") == 2 * 1 * 128 * 2
    assert kv_bytes_per_token_per_layer(llama, 8, "fp8") == 2 * 1 * 128 * 1


def test_fp8_deepseek_weights_per_stage_and_embeddings_on_the_end_stages():
    first, last = stage_weight_bytes(find_model("deepseek-ai/DeepSeek-R1"), 8, 2)
    assert 36 * GiB < first < last < 43 * GiB  # ~1 byte per parameter, 30 MoE layers + lm_head weigh more
    llama = find_model("meta-llama/Llama-3.1-70B-Instruct")
    one_stage = stage_weight_bytes(llama, 8, 1)[0]
    assert one_stage == pytest.approx(llama.parameters * 2 / 8, rel=0.001)


def test_concurrency_is_blocks_over_blocks_per_request_and_halves_with_twice_the_length():
    model, gpu = find_model("meta-llama/Llama-3.1-70B-Instruct"), find_gpu("A100-40GB")
    short = plan(PlanInput(model, gpu, tp=8, max_model_len=16384, gpu_memory_utilization=0.9))
    long = plan(PlanInput(model, gpu, tp=8, max_model_len=32768, gpu_memory_utilization=0.9))
    assert short.kv_cache_tokens == long.kv_cache_tokens
    assert long.max_concurrency == long.stages[0].num_blocks / (32768 / 16)
    assert short.max_concurrency == pytest.approx(2 * long.max_concurrency)


def test_capacity_is_the_minimum_over_stages():
    result = plan(PlanInput(find_model("deepseek-ai/DeepSeek-R1"), find_gpu("H100-80GB"), tp=8, pp=2,
                            max_model_len=32768, gpu_memory_utilization=0.92, max_num_seqs=40))
    assert result.block_size == 64  # FlashMLA on Hopper
    assert result.max_concurrency == min(s.max_concurrency for s in result.stages)


def test_tutorial_figures_name_the_settings_they_do_not_state():
    for figure in bench.PUBLISHED:
        assert figure.unknown and "vLLM version" in figure.unknown, figure.what
        if figure.gpu_memory_utilization is None:
            assert "gpu_memory_utilization" in figure.unknown, figure.what


def test_binding_limit_is_max_num_seqs_when_it_admits_fewer_requests_than_the_kv_cache_holds():
    model, gpu = find_model("meta-llama/Llama-3.1-8B-Instruct"), find_gpu("H100-80GB")
    assert plan(PlanInput(model, gpu, max_model_len=8192, max_num_seqs=4)).binding_limit == "max_num_seqs"
    assert plan(PlanInput(model, gpu, max_model_len=131072, max_num_seqs=256)).binding_limit == "kv_memory"


def test_weights_that_do_not_fit_leave_no_kv_cache():
    result = plan(PlanInput(find_model("meta-llama/Llama-3.1-70B-Instruct"), find_gpu("L4"), tp=1, max_model_len=4096))
    assert not result.fits and result.max_concurrency == 0


def test_tp_must_divide_the_attention_heads():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-0.5B-Instruct"), find_gpu("L4"), tp=4))
    assert str(err.value) == ("Qwen/Qwen2.5-0.5B-Instruct: tensor_parallel_size 4 does not divide its 14 "
                              "attention heads (use one of 1, 2, 7, 14)")


def test_kv_head_check_applies_when_the_heads_divide():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-32B-Instruct"), find_gpu("H100-80GB"), tp=20, max_model_len=4096))
    assert str(err.value) == ("Qwen/Qwen2.5-32B-Instruct: tensor_parallel_size 20 neither divides nor is a "
                              "multiple of its 8 KV heads")


def test_pp_cannot_exceed_the_layers():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-0.5B-Instruct"), find_gpu("L4"), pp=25))
    assert str(err.value) == "Qwen/Qwen2.5-0.5B-Instruct: pipeline_parallel_size 25 exceeds its 24 layers"


def test_parallel_sizes_must_be_positive():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-0.5B-Instruct"), find_gpu("L4"), tp=0))
    assert str(err.value) == "tensor_parallel_size (0) and pipeline_parallel_size (1) must be at least 1"


def test_unknown_kv_cache_dtype():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-0.5B-Instruct"), find_gpu("L4"), kv_cache_dtype="int3"))
    assert str(err.value).startswith("unknown kv_cache_dtype 'int3': use one of auto, bfloat16")


def test_gpu_memory_utilization_out_of_range():
    with pytest.raises(UserError) as err:
        plan(PlanInput(find_model("Qwen/Qwen2.5-0.5B-Instruct"), find_gpu("L4"), gpu_memory_utilization=1.5))
    assert str(err.value) == "gpu_memory_utilization 1.5 must be in (0, 1]"
