"""bench/gpu's model configs are the planner's model facts (one source of truth, checked here), and its
sweep covers every measured point."""

import importlib.util

import pytest

from kuberay_llm import toolchain
from kuberay_llm.plan import bench
from kuberay_llm.plan.catalog import find_model

GPU_DIR = toolchain.REPO_ROOT / "bench" / "gpu"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_gpu_{name}", GPU_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.path.insert(0, str(GPU_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(GPU_DIR))
    return module


MODELS = load("make_models").CONFIGS


@pytest.mark.parametrize("name", MODELS)
def test_config_json_matches_the_planner_catalog(name):
    cfg, model = MODELS[name], find_model(MODELS[name]["hub_id"])
    assert cfg["architectures"][0] == (model.architecture or cfg["architectures"][0])
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"], cfg["tie_word_embeddings"]) == (
        model.layers, model.hidden_size, model.attention_heads, model.kv_heads, model.intermediate_size,
        model.vocab_size, model.max_position_embeddings, model.tie_word_embeddings)
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts")
    if experts:
        assert (experts, cfg["num_experts_per_tok"], cfg.get("moe_intermediate_size", cfg["intermediate_size"]),
                cfg.get("n_shared_experts", 0), cfg.get("first_k_dense_replace", 0)) == (
            model.moe.experts, model.moe.experts_per_token, model.moe.intermediate_size, model.moe.shared_experts,
            model.moe.first_dense_layers)
    else:
        assert model.moe is None
    if "kv_lora_rank" in cfg:
        assert ((cfg["q_lora_rank"] or 0), cfg["kv_lora_rank"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                cfg["v_head_dim"]) == (model.mla.q_lora_rank, model.mla.kv_lora_rank, model.mla.qk_nope_head_dim,
                                       model.mla.qk_rope_head_dim, model.mla.v_head_dim)


def test_every_measured_point_is_a_sweep_point_with_its_settings():
    sweep = load("kv_sweep")
    for point in bench.measured_points():
        model, args, _ = sweep.POINTS[point["label"]]
        assert MODELS[model]["hub_id"] == point["model"]
        assert point["command"].endswith(" ".join(args)) if args else "--max-model-len" not in point["command"]
