"""The one OpenAI smoke test, used by `kuberay-llm smoke` (a RayService) and `kuberay-llm local`: list models,
one chat completion, one streamed chat completion, with the official `openai` client.

Pass criteria, the same everywhere: the model is listed; the chat completion carries text in `content` or in
the reasoning field and counts at least one completion token; the stream yields text (content or reasoning).
A reasoning parser may put a whole answer into the reasoning field: vLLM 0.29 (the one Ray 2.60 pins) names it
`reasoning` (ChatMessage in vllm/entrypoints/openai/chat_completion/protocol.py), older vLLM and seed output `reasoning_content`; both count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kuberay_llm.errors import ConnectionFailed, Failed

PROMPT = "Reply with one short sentence: what is Ray Serve?"
REASONING_FIELDS = ("reasoning", "reasoning_content")
# vLLM's sampling parameter (passed through by Ray Serve LLM): a model with random weights may stop at once,
# and an empty reply proves little.
SAMPLING = {"min_tokens": 4}


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


def check_model(base_url: str, model_id: str, *, max_tokens: int = 64, timeout_s: float = 120.0,
                show_reasoning: bool = False, echo=print) -> SmokeResult:
    """Raise Failed (the endpoint answers wrongly) or ConnectionFailed (it does not answer)."""
    import openai

    api = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="not-needed", timeout=timeout_s,
                        max_retries=0)
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        echo(text)

    messages = [{"role": "user", "content": PROMPT}]
    request = {"model": model_id, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
               "extra_body": SAMPLING}
    try:
        served = [m.id for m in api.models.list().data]
        say(f"models: {', '.join(served) or '(none)'}")
        if model_id not in served:
            raise Failed(f"model {model_id} is not served: GET /v1/models lists {served}")
        started = time.monotonic()
        reply = api.chat.completions.create(**request)
        chat_seconds = time.monotonic() - started
        message = reply.choices[0].message if reply.choices else None
        content = (message.content or "") if message else ""
        reasoning = reasoning_of(message) if message else ""
        tokens = reply.usage.completion_tokens if reply.usage else 0
        say(f"chat ({chat_seconds:.1f}s, {tokens} tokens):")
        if show_reasoning or reasoning:
            say(f"  reasoning: {shown(reasoning, '(none)')}")
        say(f"  content: {shown(content)}")
        if not (content or reasoning) or tokens < 1:
            raise Failed(f"model {model_id}: the chat completion has no text ({tokens} completion tokens)")

        started, first, chunks = time.monotonic(), None, 0
        pieces, thinking = [], []
        for chunk in api.chat.completions.create(**request, stream=True):
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
        if first is None:
            raise Failed(f"model {model_id}: the streamed chat completion produced no text "
                         "(neither content nor reasoning)")
    except openai.APIConnectionError as exc:
        raise ConnectionFailed(f"{base_url}: cannot connect ({exc.__cause__ or exc})") from None
    except openai.APIStatusError as exc:
        raise Failed(f"{base_url}: model {model_id}: HTTP {exc.status_code}: {exc.message}") from None
    except openai.APIError as exc:
        raise Failed(f"{base_url}: model {model_id}: {type(exc).__name__}: {exc}") from None
    return SmokeResult(served, content, reasoning, tokens, chat_seconds, chunks, "".join(pieces),
                       "".join(thinking), first, lines)
