"""`kuberay-llm smoke NAME`: the OpenAI API of a RayService answers: list models, one chat completion, one
streamed chat completion (reasoning models: reasoning_content and content printed apart).

Reaches `<name>-serve-svc:8000` through a port-forward over the Kubernetes API to a pod behind that Service,
or `--endpoint URL` directly. Exit codes: 0 ok, 1 a check failed, 3 usage or connection error.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from kuberay_llm.harness import settings
from kuberay_llm.harness.errors import ConnectionFailed, Failed, UsageError
from kuberay_llm.harness.kube import RAYSERVICE, ApiError, Kube, Unreachable, forbidden_message
from kuberay_llm.harness.serveconfig import Model, models

SERVE_PORT = 8000
PROMPT = "Reply with one short sentence: what is Ray Serve?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    parser.add_argument("--endpoint", help="base URL of the Serve HTTP proxy (e.g. http://10.0.0.7:8000): no port-forward")
    parser.add_argument("--model", help="model id to query (default: each model_id of serveConfigV2)")
    parser.add_argument("--max-tokens", type=int, default=None, help="default 64, 512 for reasoning models")


def check_model(base_url: str, model: Model, max_tokens: int | None) -> None:
    import openai

    api = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="not-needed",
                        timeout=settings.smoke_timeout(), max_retries=0)
    tokens = max_tokens or (512 if model.reasoning else 64)
    try:
        served = [m.id for m in api.models.list()]
        print(f"models: {', '.join(served) or '(none)'}")
        if model.model_id not in served:
            raise Failed(f"model {model.model_id} (serveConfigV2) is not served; the endpoint lists {served}")
        started = time.monotonic()
        reply = api.chat.completions.create(model=model.model_id, messages=[{"role": "user", "content": PROMPT}],
                                            max_tokens=tokens, temperature=0)
        message = reply.choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or (message.model_extra or {}).get("reasoning_content")
        print(f"chat ({time.monotonic() - started:.1f}s, {reply.usage.completion_tokens if reply.usage else '?'} tokens):")
        if model.reasoning or reasoning:
            print(f"  reasoning_content: {(reasoning or '(none)').strip()}")
        print(f"  content: {(message.content or '(empty)').strip()}")
        if not (message.content or reasoning):
            raise Failed(f"model {model.model_id} answered with no content")

        started, first = time.monotonic(), None
        content, thinking = [], []
        stream = api.chat.completions.create(model=model.model_id, messages=[{"role": "user", "content": PROMPT}],
                                             max_tokens=tokens, temperature=0, stream=True)
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            piece = delta.content or ""
            thought = getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content") or ""
            if (piece or thought) and first is None:
                first = time.monotonic() - started
            content.append(piece)
            thinking.append(thought)
        print(f"stream (first token {first if first is not None else float('nan'):.2f}s, "
              f"total {time.monotonic() - started:.1f}s):")
        if model.reasoning or any(thinking):
            print(f"  reasoning_content: {''.join(thinking).strip() or '(none)'}")
        print(f"  content: {''.join(content).strip() or '(empty)'}")
        if first is None:
            raise Failed(f"model {model.model_id}: the streamed completion produced no tokens")
    except openai.APIConnectionError as exc:
        raise ConnectionFailed(f"{base_url}: cannot connect ({exc.__cause__ or exc})") from None
    except openai.APIStatusError as exc:
        raise Failed(f"{base_url}: model {model.model_id}: HTTP {exc.status_code}: {exc.message}") from None


def run(args: argparse.Namespace) -> int:
    from kuberay_llm.harness.portforward import PortForward, pod_behind_service

    kube = None
    if not args.endpoint or not args.model:
        kube = Kube.connect(args.namespace)
        kube.check_reachable()
    targets: list[Model]
    if args.model:
        targets = [Model("?", args.model, args.model, False)]
    else:
        try:
            rayservice = kube.get(RAYSERVICE.path(kube.namespace, args.name))
        except ApiError as err:
            raise ConnectionFailed(forbidden_message(err) if err.status in (401, 403) else err.message) from None
        except Unreachable as exc:
            raise ConnectionFailed(str(exc)) from None
        if rayservice is None:
            raise Failed(f"RayService {kube.namespace}/{args.name} not found")
        targets = models(rayservice)
        if not targets:
            raise UsageError(f"RayService {args.name}: no model_loading_config.model_id in spec.serveConfigV2; "
                             "pass --model")
    with contextlib.ExitStack() as stack:
        if args.endpoint:
            base = args.endpoint
        else:
            pod, port = pod_behind_service(kube, f"{args.name}-serve-svc", SERVE_PORT)
            local = stack.enter_context(PortForward(kube, pod, port))
            base = f"http://127.0.0.1:{local}"
            print(f"port-forward 127.0.0.1:{local} -> pod {pod}:{port} ({args.name}-serve-svc:{SERVE_PORT})")
        for model in targets:
            print(f"== {model.model_id} ({model.model_source})")
            check_model(base, model, args.max_tokens)
    print("smoke test passed")
    return 0
