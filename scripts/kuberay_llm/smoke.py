"""The one OpenAI smoke test, used by `kuberay-llm smoke` (a RayService) and `kuberay-llm local`: list models,
one chat completion, one streamed chat completion, with the official `openai` client; then the checks of the
model's kind, which the serve config says (`kind_of`, read from the LLMConfig's engine_kwargs):

- text: nothing more.
- reasoning (`reasoning_parser` set): the reasoning and the content printed apart.
- hybrid reasoning (a parser that vLLM switches per request, HYBRID_SWITCHES): one chat completion with
  `chat_template_kwargs {"enable_thinking": true}` must carry reasoning, one with `false` must carry none and
  an answer in `content`.
- gpt-oss (`reasoning_parser: openai_gptoss`, the Harmony format): the chat completion must carry the analysis
  channel in the reasoning field.
- vision (`limit_mm_per_prompt` allows images, or the catalog's model has a vision tower): one chat completion
  with a PNG the test draws itself, sent as an `image_url` data URL, must answer, and its prompt must count more
  tokens than the same words without the image (the image's placeholder tokens: proof it reached the model).

Every check prints one line: `ok|FAILED <kind>: <what was checked>: <what came back>`. The same criteria hold for a
RayService and on CPU; they are chosen to be met by a real model and by the random tiny models of
`kuberay-llm local` alike, and to fail when the server does not do what the kind needs:

- Any reply: text in `content` or in the reasoning field, and at least one completion token; the stream yields
  text. A reasoning parser may put a whole answer into the reasoning field: vLLM 0.29 (the one Ray 2.60 pins)
  names it `reasoning` (ChatMessage in vllm/entrypoints/openai/chat_completion/protocol.py), older vLLM and seed
  output `reasoning_content`; both count.
- Hybrid, thinking on: vLLM 0.29's Qwen3 parser (vllm/parser/qwen3.py qwen3_config) starts in its REASONING
  state when thinking is on, so every token before `</think>` is reasoning: a real Qwen3 thinks first, and a
  random model that never writes `</think>` gives only reasoning. So reasoning must be present, while content may
  be empty (the token budget can end inside the thinking: not a failure).
- Hybrid, thinking off: the parser starts in CONTENT and `extract_reasoning` returns no reasoning at all
  (Qwen3Parser.extract_reasoning), so any reasoning means the switch did not reach the parser.
- gpt-oss: vLLM's HarmonyParser (vllm/parser/harmony.py) sends the `analysis` channel to `reasoning` and the
  `final` channel (or `commentary` without a recipient) to `content`; a truncated message is completed at the end
  (flush -> process_eos). gpt-oss always opens with analysis, so reasoning must be present; the final answer is
  reported, not required (a small max_tokens ends inside the analysis).
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from dataclasses import dataclass, field

from kuberay_llm.errors import ConnectionFailed, Failed

PROMPT = "Reply with one short sentence: what is Ray Serve?"
IMAGE_PROMPT = "What is in this image? Reply with one short sentence."
REASONING_FIELDS = ("reasoning", "reasoning_content")
# vLLM's sampling parameter (passed through by Ray Serve LLM): a model with random weights may stop at once,
# and an empty reply proves little.
SAMPLING = {"min_tokens": 4}

# vLLM sets this parser itself for gpt_oss models (vllm/model_executor/models/config.py
# GptOssForCausalLMConfig.verify_and_update_config); the chat endpoint then parses Harmony (HarmonyParser).
HARMONY_PARSER = "openai_gptoss"
# Reasoning parsers that read a chat_template_kwargs switch per request, and its key: vLLM 0.29's Qwen3Parser
# takes `chat_template_kwargs.get("enable_thinking", True)` (vllm/parser/qwen3.py). The catalog's
# reasoning.switch of each hybrid model must agree (tests/test_smoke_kinds.py).
HYBRID_SWITCHES = {"qwen3": "enable_thinking"}
# The PNG drawn for the vision check: 56 x 56 pixels is Qwen2-VL's smallest image (min_pixels 56*56,
# transformers' Qwen2VLImageProcessor), 4 image tokens after the 2x2 merge: cheap on every vision model.
IMAGE_SIDE = 56


@dataclass(frozen=True)
class Kind:
    """What a served model needs checked, read from its LLMConfig (`kind_of`)."""

    reasoning_parser: str | None = None
    vision: bool = False

    @property
    def harmony(self) -> bool:
        return self.reasoning_parser == HARMONY_PARSER

    @property
    def switch(self) -> str | None:
        """The chat_template_kwargs key that turns thinking on and off (hybrid reasoning), else None."""
        return HYBRID_SWITCHES.get(self.reasoning_parser or "")

    @property
    def reasoning(self) -> bool:
        return bool(self.reasoning_parser)

    @property
    def name(self) -> str:
        text = ("gpt-oss" if self.harmony else "hybrid" if self.switch else "reasoning" if self.reasoning_parser
                else "text")
        return ("vision" if text == "text" else f"vision+{text}") if self.vision else text

    def describe(self) -> str:
        parts = [f"reasoning_parser {self.reasoning_parser}"] if self.reasoning_parser else []
        if self.switch:
            parts.append(f"chat_template_kwargs.{self.switch} per request")
        if self.harmony:
            parts.append("Harmony channels")
        if self.vision:
            parts.append("images")
        return f"{self.name} ({', '.join(parts)})" if parts else self.name


TEXT = Kind()


def _image_limit(value) -> int | None:
    """The image count of engine_kwargs.limit_mm_per_prompt (vLLM 0.29 MultiModalConfig.limit_per_prompt:
    `{image: 3}` or `{image: {count: 3, width: ..}}`; a JSON string on the command line), None when unset."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or "image" not in value:
        return None
    image = value["image"]
    count = image.get("count") if isinstance(image, dict) else image
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def kind_of(entry) -> Kind:
    """The kind of one LLMConfig (a kuberay_llm.serveconfig.LLMEntry), from its engine_kwargs; where they say
    nothing, from what vLLM does for the catalog's model of that name (gpt-oss gets openai_gptoss, a model with a
    vision_config takes images)."""
    from kuberay_llm.errors import UserError
    from kuberay_llm.plan.catalog import find_model

    model = None
    for name in (entry.model_source, entry.model_id):
        if name:
            try:
                model = find_model(name)
                break
            except UserError:
                continue
    parser = entry.setting("reasoning_parser")
    if not parser and model is not None and model.reasoning and model.reasoning.parser == HARMONY_PARSER:
        parser = HARMONY_PARSER
    limit = _image_limit(entry.engine.get("limit_mm_per_prompt"))
    vision = limit > 0 if limit is not None else (model is not None and model.vision is not None)
    return Kind(parser or None, vision)


def png(side: int = IMAGE_SIDE) -> bytes:
    """A side x side RGB PNG (a red-green gradient with a blue square), written with zlib and struct alone."""
    rows = bytearray()
    for y in range(side):
        rows.append(0)  # filter type None
        for x in range(side):
            inside = side // 4 <= x < 3 * side // 4 and side // 4 <= y < 3 * side // 4
            rows += bytes((0, 0, 255)) if inside else bytes((255 * x // side, 255 * y // side, 64))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + \
        chunk(b"IEND", b"")


def image_message(prompt: str = IMAGE_PROMPT) -> dict:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    return {"role": "user", "content": [{"type": "text", "text": prompt},
                                        {"type": "image_url", "image_url": {"url": url}}]}


@dataclass
class SmokeResult:
    models: list[str]
    content: str
    reasoning: str
    completion_tokens: int
    chat_seconds: float
    stream_chunks: int
    stream_content: str
    stream_reasoning: str
    first_token_seconds: float | None
    lines: list[str] = field(default_factory=list)  # what was printed
    checks: list[str] = field(default_factory=list)  # the one-line verdicts, `ok ...` / `FAILED ...`

    @property
    def reply(self) -> str:
        return self.content or self.reasoning


def reasoning_of(part) -> str:
    """The reasoning text of a message or a stream delta, under either name."""
    extra = getattr(part, "model_extra", None) or {}
    for name in REASONING_FIELDS:
        value = getattr(part, name, None) or extra.get(name)
        if value:
            return str(value)
    return ""


def text_of(part) -> str:
    """The content of a message or delta, or its reasoning text where a reasoning parser took it all."""
    return (getattr(part, "content", None) or "") or reasoning_of(part)


def shown(text: str, none: str = "(empty)") -> str:
    """Text as printed: stripped, and whitespace-only text said so (a random model may emit only newlines)."""
    if text.strip():
        return text.strip()
    return f"(whitespace only: {len(text)} characters)" if text else none


def amount(text: str) -> str:
    return f"{len(text)} characters" if text else "none"


def check_model(base_url: str, model_id: str, *, kind: Kind = TEXT, max_tokens: int = 64, timeout_s: float = 120.0,
                show_reasoning: bool = False, echo=print) -> SmokeResult:
    """Raise Failed (the endpoint answers wrongly: every check still runs and prints first) or ConnectionFailed
    (it does not answer)."""
    import openai

    api = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="not-needed", timeout=timeout_s,
                        max_retries=0)
    lines: list[str] = []
    checks: list[str] = []
    failures: list[str] = []
    show_reasoning = show_reasoning or kind.reasoning

    def say(text: str) -> None:
        lines.append(text)
        echo(text)

    def verdict(what: str, ok: bool, seen: str, why: str = "") -> None:
        line = f"{'ok' if ok else 'FAILED'} {kind.name}: {what}: {seen}" + (f" ({why})" if why and not ok else "")
        checks.append(line)
        say(line)
        if not ok:
            failures.append(f"{what}: {seen}" + (f" ({why})" if why else ""))

    def chat(messages: list[dict], **extra):
        request = {"model": model_id, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                   "extra_body": {**SAMPLING, **extra}}
        started = time.monotonic()
        reply = api.chat.completions.create(**request)
        message = reply.choices[0].message if reply.choices else None
        content = (message.content or "") if message else ""
        reasoning = reasoning_of(message) if message else ""
        usage = reply.usage
        return content, reasoning, usage.completion_tokens if usage else 0, \
            usage.prompt_tokens if usage else 0, time.monotonic() - started

    messages = [{"role": "user", "content": PROMPT}]
    step = ["GET /v1/models"]  # what was being asked when an error came
    try:
        served = [m.id for m in api.models.list().data]
        say(f"models: {', '.join(served) or '(none)'}")
        verdict("GET /v1/models lists it", model_id in served, ", ".join(served) or "(none)")
        if model_id not in served:
            raise Failed(f"model {model_id} is not served: GET /v1/models lists {served}")

        step[0] = "chat completion"
        content, reasoning, tokens, _, chat_seconds = chat(messages)
        first_reply = (content, reasoning, tokens)
        say(f"chat ({chat_seconds:.1f}s, {tokens} tokens):")
        if show_reasoning or reasoning:
            say(f"  reasoning: {shown(reasoning, '(none)')}")
        say(f"  content: {shown(content)}")
        verdict("chat completion has text", bool(content or reasoning) and tokens >= 1,
                f"content {amount(content)}, reasoning {amount(reasoning)}, {tokens} completion tokens")
        if kind.harmony:
            verdict("Harmony analysis channel arrives in the reasoning field", bool(reasoning),
                    f"reasoning {amount(reasoning)}, final answer (content) {amount(content)}",
                    "vLLM's HarmonyParser sends the analysis channel to `reasoning`: is reasoning_parser "
                    f"{HARMONY_PARSER} lost, or include_reasoning off?")

        step[0] = "streamed chat completion"
        started, first, chunks = time.monotonic(), None, 0
        pieces, thinking = [], []
        stream = api.chat.completions.create(model=model_id, messages=messages, max_tokens=max_tokens,
                                             temperature=0, extra_body=SAMPLING, stream=True)
        for chunk in stream:
            chunks += 1
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            piece, thought = delta.content or "", reasoning_of(delta)
            if (piece or thought) and first is None:
                first = time.monotonic() - started
            pieces.append(piece)
            thinking.append(thought)
        say(f"stream ({chunks} chunks, first token "
            f"{f'{first:.2f}s' if first is not None else 'never'}, total {time.monotonic() - started:.1f}s):")
        if show_reasoning or any(thinking):
            say(f"  reasoning: {shown(''.join(thinking), '(none)')}")
        say(f"  content: {shown(''.join(pieces))}")
        verdict("streamed chat completion yields text", first is not None,
                f"{chunks} chunks, content {amount(''.join(pieces))}, reasoning {amount(''.join(thinking))}")

        if kind.switch:
            for on in (True, False):
                step[0] = f"chat completion with chat_template_kwargs {kind.switch}={str(on).lower()}"
                content, reasoning, tokens, _, seconds = chat(messages, chat_template_kwargs={kind.switch: on})
                seen = f"reasoning {amount(reasoning)}, content {amount(content)}, {tokens} tokens, {seconds:.1f}s"
                what = f"thinking {'on' if on else 'off'} (chat_template_kwargs {{\"{kind.switch}\": {str(on).lower()}}})"
                if on:
                    verdict(f"{what} carries reasoning", bool(reasoning), seen,
                            f"vLLM's {kind.reasoning_parser} parser starts in its reasoning state with thinking on")
                else:
                    verdict(f"{what} carries no reasoning and an answer", not reasoning and bool(content), seen,
                            "with thinking off the parser puts everything in content")

        if kind.vision:
            step[0] = "chat completion with an image"
            *_, text_prompt_tokens, _ = chat([{"role": "user", "content": IMAGE_PROMPT}])
            content, reasoning, tokens, prompt_tokens, seconds = chat([image_message()])
            # The same words with and without the image: the difference is the image's placeholder tokens, so a
            # server that dropped the image (a template without image parts) shows +0.
            extra = prompt_tokens - text_prompt_tokens
            verdict(f"chat completion with a {IMAGE_SIDE}x{IMAGE_SIDE} PNG (image_url data URL) answers, its prompt "
                    "longer than without the image", bool(content or reasoning) and tokens >= 1 and extra > 0,
                    f"{prompt_tokens} prompt tokens ({extra:+d} for the image), {tokens} completion tokens in "
                    f"{seconds:.1f}s: {shown(content or reasoning)!r}",
                    "no text in the reply" if not (content or reasoning) else
                    "the image added no prompt tokens: it did not reach the model")
    except openai.APIConnectionError as exc:
        raise ConnectionFailed(f"{base_url}: cannot connect ({exc.__cause__ or exc})") from None
    except openai.APIStatusError as exc:
        raise Failed(f"{base_url}: model {model_id} ({kind.name}): {step[0]}: HTTP {exc.status_code}: "
                     f"{exc.message}") from None
    except openai.APIError as exc:
        raise Failed(f"{base_url}: model {model_id} ({kind.name}): {step[0]}: {type(exc).__name__}: {exc}") from None
    if failures:
        raise Failed(f"model {model_id} ({kind.name}): " + "; ".join(failures))
    return SmokeResult(served, *first_reply, chat_seconds, chunks, "".join(pieces),
                       "".join(thinking), first, lines, checks)
