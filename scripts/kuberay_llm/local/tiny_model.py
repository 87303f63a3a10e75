"""A tiny random-weight Llama with a byte-level BPE tokenizer, made offline and cached under .work/.

Nothing can come from a model hub here, so `kuberay-llm local` serves this model in place of the
overlay's `model_source`. The weights are random (the replies are noise); what is real is everything
around them: the config vLLM reads, the tokenizer with a chat template, the safetensors loader path.
Sizes respect vLLM's CPU attention (head_dim >= 32) and keep start-up and decoding fast on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from kuberay_llm.errors import UserError

# Bump when anything below changes: the cache directory name includes it.
TINY_MODEL_VERSION = "2"

HIDDEN_SIZE = 128
NUM_HEADS = 4  # head_dim 32
NUM_KV_HEADS = 2
NUM_LAYERS = 2
INTERMEDIATE_SIZE = 256
VOCAB_SIZE = 1024  # BPE target; the model's vocab is what training reaches, so every id decodes
# Long enough for every overlay's max_model_len (the large tier asks 16k, medium 32k).
MAX_POSITIONS = 131072
SEED = 20261122

BOS, EOS, PAD = "<|begin_of_text|>", "<|im_end|>", "<|pad|>"
# <think>/</think> make the DeepSeek-R1 reasoning parser usable, so overlays keep their reasoning_parser.
SPECIAL_TOKENS = [BOS, EOS, PAD, "<|im_start|>", "<think>", "</think>"]

# ChatML: the template transformers' apply_chat_template and vLLM's chat endpoint render.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Training text for the BPE merges: enough English and markup that prompts tokenize into words.
CORPUS = """\
Ray Serve LLM runs vLLM engines behind an OpenAI compatible API on a Ray cluster.
KubeRay deploys a RayService: a head pod, GPU worker pods, and the serve config of the applications.
The quick brown fox jumps over the lazy dog. Hello, world! How are you today? I am fine, thank you.
Kubernetes schedules pods on nodes; a deployment keeps replicas running; a service routes traffic.
Write a haiku about autumn leaves. Explain tensor parallelism in one sentence. What is 2 + 2?
The model answers questions, writes code, and summarizes documents. def main(): return 0
{"role": "user", "content": "Say hello"} <think> reasoning </think> The answer is 42.
0 1 2 3 4 5 6 7 8 9 10 100 1000 a b c d e f g h i j k l m n o p q r s t u v w x y z
"""


def model_dir(work_dir: Path) -> Path:
    key = hashlib.sha256(json.dumps([TINY_MODEL_VERSION, HIDDEN_SIZE, NUM_HEADS, NUM_KV_HEADS, NUM_LAYERS,
                                     INTERMEDIATE_SIZE, VOCAB_SIZE, MAX_POSITIONS, SEED, CHAT_TEMPLATE,
                                     CORPUS]).encode()).hexdigest()[:12]
    return work_dir / "models" / f"tiny-llama-{key}"


def ensure_tiny_model(work_dir: Path) -> Path:
    """The cached tiny model directory, generating it first if missing (about 5 s, no network)."""
    target = model_dir(work_dir)
    if (target / ".complete").exists():
        return target
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        raise UserError(f"the local stack is not installed ({exc.name} missing): run `make setup-local`") from None

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=MAX_POSITIONS)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(partial)

    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_KV_HEADS,
        head_dim=HIDDEN_SIZE // NUM_HEADS, max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.convert_tokens_to_ids(BOS), eos_token_id=fast.convert_tokens_to_ids(EOS),
        pad_token_id=fast.convert_tokens_to_ids(PAD), tie_word_embeddings=True, torch_dtype="bfloat16",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(partial, safe_serialization=True)
    (partial / ".complete").write_text(TINY_MODEL_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
