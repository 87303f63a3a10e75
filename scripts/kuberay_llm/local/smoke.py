"""Smoke-test an OpenAI-compatible endpoint with the official `openai` client: list, chat, streamed chat."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kuberay_llm.errors import UserError

PROMPT = "Say hello to KubeRay in one short sentence."
MAX_TOKENS = 16
# The tiny model's weights are random: without this it may stop at once, and an empty reply proves little.
SAMPLING = {"min_tokens": 4}


@dataclass
class SmokeResult:
    models: list[str]
    reply: str  # content, or the reasoning text when a reasoning parser took it all
    completion_tokens: int
    chat_seconds: float
    stream_chunks: int
    stream_text: str


def text_of(message) -> str:
    """The content, or the reasoning text where a reasoning parser took the whole (random) reply.

    vLLM 0.29 names that field `reasoning`; older releases and some clients call it `reasoning_content`.
    """
    return (message.content or getattr(message, "reasoning", None)
            or getattr(message, "reasoning_content", None) or "")


def smoke_test(base_url: str, model_id: str, timeout_s: float = 120.0) -> SmokeResult:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-needed-locally", timeout=timeout_s, max_retries=0)
    try:
        models = [m.id for m in client.models.list().data]
        if model_id not in models:
            raise UserError(f"GET /v1/models lists {models}, not {model_id}")
        messages = [{"role": "user", "content": PROMPT}]
        start = time.monotonic()
        chat = client.chat.completions.create(model=model_id, messages=messages, max_tokens=MAX_TOKENS,
                                              extra_body=SAMPLING)
        chat_seconds = time.monotonic() - start
        message = chat.choices[0].message
        reply = text_of(message)
        if chat.model != model_id or not reply or not chat.usage or chat.usage.completion_tokens < 1:
            raise UserError(f"chat completion is not a real answer: {chat.model_dump_json()[:500]}")
        chunks, pieces = 0, []
        for chunk in client.chat.completions.create(model=model_id, messages=messages, max_tokens=MAX_TOKENS,
                                                    extra_body=SAMPLING, stream=True):
            chunks += 1
            if chunk.choices:
                delta = chunk.choices[0].delta
                pieces.append(text_of(delta))
        if chunks < 2 or not "".join(pieces):
            raise UserError(f"streamed chat returned {chunks} chunks and no text")
    except openai.APIError as exc:
        raise UserError(f"{base_url}: {type(exc).__name__}: {exc}") from None
    return SmokeResult(models=models, reply=reply, completion_tokens=chat.usage.completion_tokens,
                       chat_seconds=chat_seconds, stream_chunks=chunks, stream_text="".join(pieces))
