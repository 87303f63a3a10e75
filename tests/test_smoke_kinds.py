"""The smoke test of each kind of model (kuberay_llm/smoke.py): the kind read from the serve config, and the
checks against a real HTTP server with the real `openai` client.

The server is a stdlib HTTP server in this process that answers the OpenAI routes in vLLM 0.29's shapes
(ChatMessage.reasoning, SSE chunks, HTTP 400 for an image to a text-only model): a stand-in for vLLM, because
these tests vary what the server does wrong, which a real engine cannot be made to do. The real engines run in
tests/test_local_kinds.py (hybrid, vision) on CPU.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kuberay_llm import serveconfig, smoke
from kuberay_llm.errors import Failed
from kuberay_llm.harness.serveconfig import models
from kuberay_llm.plan.catalog import models as catalog_models
from kuberay_llm.render import render_overlay

MODEL = "m"


def entry(engine: dict | None = None, source: str = "example/unknown-model") -> serveconfig.LLMEntry:
    llm = {"model_loading_config": {"model_id": MODEL, "model_source": source}, "engine_kwargs": engine or {}}
    return serveconfig.from_data({"applications": [{"args": {"llm_configs": [llm]}}]}).llm_entries[0]


# --- the kind, from the serve config ----------------------------------------------------------------------------

@pytest.mark.parametrize("overlay, kind", [
    ("small", "text"), ("local-cpu", "text"), ("reasoning", "reasoning"), ("large", "reasoning"),
    ("hybrid-reasoning", "hybrid"), ("gpt-oss-20b", "gpt-oss"), ("gpt-oss-120b", "gpt-oss"), ("vision", "vision"),
])
def test_each_overlay_s_kind_comes_from_its_rendered_serve_config(overlay, kind):
    rendered = render_overlay(overlay)
    service = next(o for o in rendered.objects if o.get("kind") == "RayService")
    assert [t.kind.name for t in models(service)] == [kind]


def test_vision_is_read_from_limit_mm_per_prompt_in_each_of_vllm_s_spellings():
    assert smoke.kind_of(entry({"limit_mm_per_prompt": {"image": 3}})).vision
    assert smoke.kind_of(entry({"limit_mm_per_prompt": {"image": {"count": 2, "width": 512}}})).vision
    assert smoke.kind_of(entry({"limit_mm_per_prompt": '{"image": 1}'})).vision
    assert not smoke.kind_of(entry({"limit_mm_per_prompt": {"video": 1}})).vision
    assert not smoke.kind_of(entry()).vision


def test_a_vision_model_with_images_turned_off_is_checked_as_text():
    """The catalog knows Qwen2.5-VL has a vision tower; `image: 0` in the config wins."""
    assert smoke.kind_of(entry(source="Qwen/Qwen2.5-VL-7B-Instruct")).vision
    assert not smoke.kind_of(entry({"limit_mm_per_prompt": {"image": 0}}, "Qwen/Qwen2.5-VL-7B-Instruct")).vision


def test_gpt_oss_without_a_reasoning_parser_is_still_harmony():
    """vLLM sets openai_gptoss itself for gpt_oss models, so an LLMConfig that omits it still answers in Harmony."""
    kind = smoke.kind_of(entry(source="openai/gpt-oss-20b"))
    assert kind.harmony and kind.name == "gpt-oss"
    assert smoke.kind_of(entry({"reasoning_parser": "deepseek_r1"})).name == "reasoning"
    assert smoke.kind_of(entry({"reasoning_parser": "qwen3", "limit_mm_per_prompt": {"image": 1}})).name == \
        "vision+hybrid"


def test_the_hybrid_switch_is_the_one_vllm_s_parser_reads_and_the_catalog_names():
    from vllm.parser.qwen3 import Qwen3Parser

    for parser, key in smoke.HYBRID_SWITCHES.items():
        assert parser == Qwen3Parser.CONFIG_NAME
        assert f'.get("{key}", True)' in inspect.getsource(Qwen3Parser.__init__)
    hybrids = {m.reasoning.parser: m.reasoning.switch for m in catalog_models().values()
               if m.reasoning and m.reasoning.switch}
    assert hybrids and all(smoke.HYBRID_SWITCHES[p] == s for p, s in hybrids.items())


def test_the_image_is_a_valid_png_of_the_stated_size():
    from PIL import Image

    image = Image.open(io.BytesIO(smoke.png()))
    image.load()  # decodes every row: CRCs and zlib stream valid
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (smoke.IMAGE_SIDE, smoke.IMAGE_SIDE)
    assert image.getpixel((smoke.IMAGE_SIDE // 2, smoke.IMAGE_SIDE // 2)) == (0, 0, 255)
    assert image.getpixel((0, smoke.IMAGE_SIDE - 1))[1] > 200


# --- the checks, against an HTTP server ---------------------------------------------------------------------------

class Server:
    """An OpenAI chat server; `reply(request) -> (content, reasoning)` or raises Reject(status, message)."""

    def __init__(self, reply, reasoning_field: str = "reasoning", image_tokens: int = 6):
        self.reply, self.field, self.requests, self.image_tokens = reply, reasoning_field, [], image_tokens
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]})

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(request)
                try:
                    content, reasoning = server.reply(request)
                except Reject as err:
                    return self.send(err.status, {"object": "error", "message": err.message,
                                                  "type": "BadRequestError", "code": err.status})
                if request.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for name, text in ((server.field, reasoning), ("content", content)):
                        for piece in re.findall(r".{1,3}", text or "", re.S):
                            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                                     "choices": [{"index": 0, "delta": {name: piece}, "finish_reason": None}]}
                            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                message = {"role": "assistant", "content": content, server.field: reasoning}
                tokens = len((content or "") + (reasoning or "")) // 3
                prompt = 9 + server.image_tokens * len(images_of(request))
                self.send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": MODEL,
                                "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                                "usage": {"prompt_tokens": prompt, "completion_tokens": tokens,
                                          "total_tokens": prompt + tokens}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        # close() waits for serve_forever's next poll: 0.5 s a test at the default interval
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Reject(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def serve_and_check(reply, kind: smoke.Kind, **server_args):
    server = Server(reply, **server_args)
    printed: list[str] = []
    try:
        return smoke.check_model(server.url, MODEL, kind=kind, max_tokens=16, echo=printed.append), server
    finally:
        server.close()


def switch_of(request: dict) -> bool | None:
    return (request.get("chat_template_kwargs") or {}).get("enable_thinking")


def qwen3_like(request: dict):
    """vLLM 0.29's qwen3 parser on a model that never closes </think>: thinking on -> all reasoning, off -> content."""
    return ("an answer", None) if switch_of(request) is False else (None, "thinking that never ends")


def images_of(request: dict) -> list[bytes]:
    out = []
    for message in request["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] == "image_url":
                header, data = part["image_url"]["url"].split(",", 1)
                assert header == "data:image/png;base64"
                out.append(base64.b64decode(data))
    return out


def test_hybrid_passes_when_the_switch_turns_the_reasoning_off():
    result, server = serve_and_check(qwen3_like, smoke.Kind("qwen3"))
    switches = [switch_of(r) for r in server.requests if not r.get("stream")]
    assert switches == [None, True, False]
    assert result.checks[-2] == ('ok hybrid: thinking on (chat_template_kwargs {"enable_thinking": true}) carries '
                                 'reasoning: reasoning 24 characters, content none, 8 tokens, '
                                 + result.checks[-2].rsplit(", ", 1)[1])
    assert result.checks[-1].startswith('ok hybrid: thinking off (chat_template_kwargs {"enable_thinking": false}) '
                                        'carries no reasoning and an answer: reasoning none, content 9 characters')
    assert all(line.startswith("ok hybrid: ") for line in result.checks) and len(result.checks) == 5


def test_hybrid_fails_when_reasoning_comes_with_thinking_off():
    """A server that ignores chat_template_kwargs (or a parser without the switch) thinks either way."""
    with pytest.raises(Failed) as err:
        serve_and_check(lambda request: (None, "thinking"), smoke.Kind("qwen3"))
    assert str(err.value).startswith(
        'model m (hybrid): thinking off (chat_template_kwargs {"enable_thinking": false}) carries no reasoning and '
        "an answer: reasoning 8 characters, content none, 2 tokens, ")
    assert str(err.value).endswith("(with thinking off the parser puts everything in content)")


def test_hybrid_fails_when_thinking_on_brings_no_reasoning():
    with pytest.raises(Failed, match=r"^model m \(hybrid\): thinking on \(chat_template_kwargs "
                                     r'\{"enable_thinking": true\}\) carries reasoning: reasoning none, content 9 '
                                     r"characters, 3 tokens, .*\(vLLM's qwen3 parser starts in its reasoning state"):
        serve_and_check(lambda request: ("an answer", None), smoke.Kind("qwen3"))


def test_gpt_oss_reads_the_harmony_analysis_channel_from_reasoning():
    result, _ = serve_and_check(lambda request: ("final answer", "analysis of the question"), smoke.Kind("openai_gptoss"))
    assert "ok gpt-oss: Harmony analysis channel arrives in the reasoning field: reasoning 24 characters, final " \
           "answer (content) 12 characters" in result.checks
    with pytest.raises(Failed, match=r"^model m \(gpt-oss\): Harmony analysis channel arrives in the reasoning "
                                     r"field: reasoning none, final answer \(content\) 12 characters"):
        serve_and_check(lambda request: ("final answer", None), smoke.Kind("openai_gptoss"))


def test_the_older_reasoning_content_field_counts():
    result, _ = serve_and_check(lambda request: (None, "all of it reasoning"), smoke.Kind("deepseek_r1"),
                                reasoning_field="reasoning_content")
    assert result.reasoning == "all of it reasoning" and result.stream_reasoning == "all of it reasoning"


def test_vision_sends_the_png_as_a_data_url_and_passes_on_an_answer():
    seen = []

    def reply(request):
        seen.extend(images_of(request))
        return ("a blue square", None)

    result, _ = serve_and_check(reply, smoke.Kind(None, True))
    assert seen == [smoke.png()]
    assert result.checks[-1].startswith("ok vision: chat completion with a 56x56 PNG (image_url data URL) answers, "
                                        "its prompt longer than without the image: 15 prompt tokens (+6 for the "
                                        "image), 4 completion tokens in ")


def test_vision_fails_when_the_image_adds_no_prompt_tokens():
    """A server that answers but dropped the image (a chat template without image parts) is caught."""
    with pytest.raises(Failed) as err:
        serve_and_check(lambda request: ("a reply", None), smoke.Kind(None, True), image_tokens=0)
    assert "answers, its prompt longer than without the image: 9 prompt tokens (+0 for the image)" in str(err.value)
    assert str(err.value).endswith("(the image added no prompt tokens: it did not reach the model)")


def test_vision_fails_with_the_server_s_words_when_it_refuses_images():
    def text_only(request):
        if images_of(request):
            raise Reject(400, "image input is not supported by this model")
        return ("text", None)

    with pytest.raises(Failed) as err:
        serve_and_check(text_only, smoke.Kind(None, True))
    assert str(err.value).endswith("model m (vision): chat completion with an image: HTTP 400: Error code: 400 - "
                                   "image input is not supported by this model")


def test_a_text_model_gets_no_kind_checks_and_an_empty_reply_fails():
    result, server = serve_and_check(lambda request: ("hello", None), smoke.TEXT)
    assert len(server.requests) == 2 and [c.split(":")[0] for c in result.checks] == ["ok text"] * 3
    with pytest.raises(Failed, match=r"^model m \(text\): chat completion has text: content none, reasoning none, "
                                     r"0 completion tokens; streamed chat completion yields text: 0 chunks, content none, reasoning none$"):
        serve_and_check(lambda request: (None, None), smoke.TEXT)


def test_the_local_command_picks_the_tiny_model_of_each_kind():
    """`kuberay-llm local` serves a Qwen2.5-VL for vision, a Qwen3 for hybrid, and refuses gpt-oss with why."""
    from kuberay_llm.errors import UserError
    from kuberay_llm.local import tiny_model

    assert tiny_model.architecture_for(smoke.Kind(None, True)) == "qwen2_5_vl"
    assert tiny_model.architecture_for(smoke.Kind("qwen3")) == "qwen3"
    assert tiny_model.architecture_for(smoke.Kind("deepseek_r1")) == "llama"
    with pytest.raises(UserError, match=r"^a gpt-oss model does not run locally: vLLM parses gpt-oss replies with "
                                        r"the Harmony encoding, whose o200k_base vocabulary"):
        tiny_model.architecture_for(smoke.Kind("openai_gptoss"))


def test_the_hybrid_tiny_model_s_template_writes_qwen3_s_empty_think_block_only_with_thinking_off():
    from jinja2 import Template

    from kuberay_llm.local.tiny_model import BOS, QWEN3_CHAT_TEMPLATE

    def render(**kwargs):
        return Template(QWEN3_CHAT_TEMPLATE).render(messages=[{"role": "user", "content": "hi"}], bos_token=BOS,
                                                    add_generation_prompt=True, **kwargs)

    assert render().endswith("<|im_start|>assistant\n") and render(enable_thinking=True) == render()
    assert render(enable_thinking=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_kinds_survive_localizing_for_the_smoke_of_kuberay_llm_local():
    """`local` reads kinds from the localized config: the keys a kind comes from must stay in it."""
    from kuberay_llm.local.command import kinds_of
    from kuberay_llm.local.serve_config import localize, serve_config_of

    for overlay, name in (("vision", "vision"), ("hybrid-reasoning", "hybrid"), ("reasoning", "reasoning")):
        _, config = serve_config_of(render_overlay(overlay))
        local, _ = localize(config, model_path="/tiny", kv_cache_bytes=2**28)
        assert [k.name for k in kinds_of(local).values()] == [name]


def test_kuberay_llm_local_refuses_gpt_oss_with_the_reason_before_starting_anything():
    """gpt-oss cannot run on this CPU machine (Harmony's vocabulary is a download; MXFP4 needs a GPU): the command
    says so, naming the overlay and the model, with the usage exit code, and starts no Ray head."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "local", "gpt-oss-20b"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: overlays/gpt-oss-20b: model my-gpt-oss (openai/gpt-oss-20b): a gpt-oss "
                                  "model does not run locally: vLLM parses gpt-oss replies with the Harmony encoding")
