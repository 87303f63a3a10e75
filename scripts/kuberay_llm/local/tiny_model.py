"""Tiny random-weight models with a byte-level BPE tokenizer, made offline and cached under .work/.

Nothing can come from a model hub here, so `kuberay-llm local` serves one of these in place of the
overlay's `model_source`, of the architecture its kind needs (TINY_MODELS): a Llama for text and
reasoning models, a Qwen3 (with Qwen3's `enable_thinking` chat-template switch) for hybrid reasoning, a
Qwen2.5-VL (vision tower, image processor, image placeholder tokens) for vision. The weights are random (the
replies are noise); what is real is everything around them: the config vLLM reads, the tokenizer with a chat
template, the image processor, the safetensors loader path. Sizes respect vLLM's CPU attention
(head_dim >= 32) and keep start-up and decoding fast on 2 cores.
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

# Qwen2.5-VL's placeholder tokens: the processor expands <|image_pad|> to one token per merged patch.
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# ChatML: the template transformers' apply_chat_template and vLLM's chat endpoint render.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Qwen3's switch (its chat template on the Hub): with enable_thinking false the template writes an empty
# think block after the assistant header, so the model answers at once; vLLM's qwen3 parser reads the same
# chat_template_kwargs to start in content instead of reasoning (vllm/parser/qwen3.py).
QWEN3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)

# Qwen2.5-VL's layout of an image in the prompt; the content is a list of OpenAI parts (vLLM detects the
# "openai" content format from the loop over message['content']).
VL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] in ('image', 'image_url') %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
VISION_DEPTH = 2
VISION_HIDDEN_SIZE = 128  # 4 heads of 32
PATCH_SIZE, SPATIAL_MERGE_SIZE, TEMPORAL_PATCH_SIZE = 14, 2, 2  # Qwen2.5-VL's own
# Multimodal rotary sections over head_dim / 2 = 16 (Qwen2.5-VL-7B: [16, 24, 24] over 64)
MROPE_SECTION = [4, 6, 6]

# architecture -> how the replacement is described
TINY_MODELS = {
    "llama": "a tiny random-weight Llama",
    "qwen3": "a tiny random-weight Qwen3 with Qwen3's enable_thinking switch",
    "qwen2_5_vl": "a tiny random-weight Qwen2.5-VL with a vision tower",
}
# Why a gpt-oss model (Harmony) has no tiny stand-in here (vLLM 0.29 CPU build, offline):
GPT_OSS_NOT_LOCAL = (
    "vLLM parses gpt-oss replies with the Harmony encoding, whose o200k_base vocabulary openai_harmony downloads "
    "at start-up (openaipublic.blob.core.windows.net, hash-checked): nothing can be downloaded here; and the real "
    "checkpoint's MXFP4 experts need a GPU of compute capability 8.0 "
    "(vllm/model_executor/layers/quantization/mxfp4.py get_min_capability). `kuberay-llm validate` and `plan` "
    "check it offline; `kuberay-llm smoke` checks its Harmony reasoning on a cluster"
)


def architecture_for(kind) -> str:
    """The tiny model architecture that serves a kuberay_llm.smoke.Kind; UserError where none can."""
    if kind.harmony:
        raise UserError(f"a gpt-oss model does not run locally: {GPT_OSS_NOT_LOCAL}")
    return "qwen2_5_vl" if kind.vision else "qwen3" if kind.switch else "llama"

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


def model_dir(work_dir: Path, architecture: str = "llama") -> Path:
    parts = [TINY_MODEL_VERSION, HIDDEN_SIZE, NUM_HEADS, NUM_KV_HEADS, NUM_LAYERS, INTERMEDIATE_SIZE, VOCAB_SIZE,
             MAX_POSITIONS, SEED, CHAT_TEMPLATE, CORPUS]
    if architecture == "qwen3":
        parts += [QWEN3_CHAT_TEMPLATE]
    elif architecture == "qwen2_5_vl":
        parts += [VL_CHAT_TEMPLATE, VISION_TOKENS, VISION_DEPTH, VISION_HIDDEN_SIZE, PATCH_SIZE,
                  SPATIAL_MERGE_SIZE, TEMPORAL_PATCH_SIZE, MROPE_SECTION]
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]
    name = "llama" if architecture == "llama" else architecture.replace("_", "-")
    return work_dir / "models" / f"tiny-{name}-{key}"


def ensure_tiny_model(work_dir: Path, architecture: str = "llama") -> Path:
    """The cached tiny model directory of `architecture` (TINY_MODELS), generating it first if missing
    (about 5 s, no network)."""
    if architecture not in TINY_MODELS:
        raise UserError(f"no tiny model of architecture {architecture!r}: there are {', '.join(TINY_MODELS)}")
    target = model_dir(work_dir, architecture)
    if (target / ".complete").exists():
        return target
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:
        raise UserError(f"the local stack is not installed ({exc.name} missing): run `make setup-local`") from None

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    special = SPECIAL_TOKENS + (VISION_TOKENS if architecture == "qwen2_5_vl" else [])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=MAX_POSITIONS)
    fast.chat_template = {"llama": CHAT_TEMPLATE, "qwen3": QWEN3_CHAT_TEMPLATE,
                          "qwen2_5_vl": VL_CHAT_TEMPLATE}[architecture]
    fast.save_pretrained(partial)

    text = dict(
        vocab_size=len(fast), hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_KV_HEADS,
        head_dim=HIDDEN_SIZE // NUM_HEADS, max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.convert_tokens_to_ids(BOS), eos_token_id=fast.convert_tokens_to_ids(EOS),
        pad_token_id=fast.convert_tokens_to_ids(PAD), tie_word_embeddings=True,
    )
    torch.manual_seed(SEED)
    if architecture == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**text, torch_dtype="bfloat16"))
    elif architecture == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        model = Qwen3ForCausalLM(Qwen3Config(**text, torch_dtype="bfloat16"))
    else:
        model = _vision_model(fast, text, partial)
    model.to(torch.bfloat16).save_pretrained(partial, safe_serialization=True)
    (partial / ".complete").write_text(TINY_MODEL_VERSION + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def _vision_model(tokenizer, text: dict, directory: Path):
    """A Qwen2.5-VL of the text sizes above, with its image processor (transformers' PIL one: no torchvision)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    try:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import Qwen2VLImageProcessor as ImageProcessor
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                 "mrope_section": MROPE_SECTION}},
        vision_config={"depth": VISION_DEPTH, "hidden_size": VISION_HIDDEN_SIZE, "num_heads": NUM_HEADS,
                       "intermediate_size": INTERMEDIATE_SIZE, "out_hidden_size": HIDDEN_SIZE,
                       "patch_size": PATCH_SIZE, "spatial_merge_size": SPATIAL_MERGE_SIZE,
                       "temporal_patch_size": TEMPORAL_PATCH_SIZE, "fullatt_block_indexes": [VISION_DEPTH - 1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True, torch_dtype="bfloat16")
    ImageProcessor(patch_size=PATCH_SIZE, merge_size=SPATIAL_MERGE_SIZE,
                   temporal_patch_size=TEMPORAL_PATCH_SIZE).save_pretrained(directory)
    return Qwen2_5_VLForConditionalGeneration(config)
