"""Model directories for `vllm serve DIR --load-format dummy`: each model's published config.json and an
offline tokenizer of exactly its vocabulary size. No weights, no Hugging Face access: vLLM allocates the
weights as a real load would and fills them with random values, so memory accounting and speed are the
real model's (the generated text is not).

usage: python3 bench/gpu/make_models.py OUTDIR [name ...]      (needs `tokenizers` and `transformers`)
"""

from __future__ import annotations

import json
import os
import sys

# config.json as published on each model's Hugging Face page (auto_map / remote-code entries dropped:
# vLLM and transformers have native classes). tests/test_bench_gpu.py checks them against
# scripts/kuberay_llm/data/models.yaml, the planner's copy of the same facts.
CONFIGS = {
    "llama8b": {  # meta-llama/Llama-3.1-8B-Instruct
        "hub_id": "meta-llama/Llama-3.1-8B-Instruct",
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 128256,
    },
    "qwen32b": {  # Qwen/Qwen2.5-32B-Instruct
        "hub_id": "Qwen/Qwen2.5-32B-Instruct",
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
        "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 5120, "initializer_range": 0.02,
        "intermediate_size": 27648, "max_position_embeddings": 32768, "max_window_layers": 70,
        "model_type": "qwen2", "num_attention_heads": 40, "num_hidden_layers": 64,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "use_sliding_window": False, "vocab_size": 152064,
    },
    "mixtral": {  # mistralai/Mixtral-8x7B-Instruct-v0.1
        "hub_id": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
        "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
        "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_cache": True, "vocab_size": 32000,
    },
    "dsv2lite": {  # deepseek-ai/DeepSeek-V2-Lite-Chat
        "hub_id": "deepseek-ai/DeepSeek-V2-Lite-Chat",
        "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001,
        "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048,
        "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
        "max_position_embeddings": 163840, "model_type": "deepseek_v2", "moe_intermediate_size": 1408,
        "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
        "norm_topk_prob": False, "num_attention_heads": 16, "num_experts_per_tok": 6,
        "num_hidden_layers": 27, "num_key_value_heads": 16, "pretraining_tp": 1, "q_lora_rank": None,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                         "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                         "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": True,
        "tie_word_embeddings": False, "topk_group": 1, "topk_method": "greedy",
        "torch_dtype": "bfloat16", "use_cache": True, "v_head_dim": 128, "vocab_size": 102400,
    },
}

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}assistant : {% endif %}")


def tokenizer(vocab_size: int, max_len: int):
    """A WordLevel tokenizer with exactly vocab_size ids (0 <s>, 1 </s>, 2 <unk>, 3 <pad>, role words, then
    w<i>), so every id a random-weight model samples decodes, and a chat template for /v1/chat/completions."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<unk>", "<pad>", "system", "user", "assistant", ":"]
    vocab = {t: i for i, t in enumerate(words)}
    vocab.update({f"w{i}": i for i in range(len(words), vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE, model_max_length=max_len)


def config_json(name: str) -> dict:
    return {k: v for k, v in CONFIGS[name].items() if k != "hub_id"}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out, names = argv[0], argv[1:] or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"unknown model {unknown}: known {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    for name in names:
        cfg = config_json(name)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        fast = tokenizer(cfg["vocab_size"], cfg["max_position_embeddings"])
        fast.save_pretrained(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        if len(fast) != cfg["vocab_size"]:
            print(f"{name}: tokenizer has {len(fast)} ids, config {cfg['vocab_size']}", file=sys.stderr)
            return 1
        print(f"{name}: {d} (vocab {len(fast)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
