"""`kuberay-llm smoke NAME`: the OpenAI API of a RayService answers: list models, one chat completion, one
streamed chat completion, then the checks of each model's kind as its serveConfigV2 says it (kuberay_llm/smoke.py,
the same test `kuberay-llm local` runs): reasoning printed apart from the content; hybrid reasoning with thinking
on and off; gpt-oss's Harmony analysis in the reasoning field; vision with an image.

Reaches `<name>-serve-svc:8000` through a port-forward over the Kubernetes API to a pod behind that Service,
or `--endpoint URL` directly. Exit codes (kuberay_llm/exitcodes.py): 0 ok, 1 a check failed, 2 usage, 3 unreachable.
"""

from __future__ import annotations

import argparse
import contextlib

from kuberay_llm import settings, smoke
from kuberay_llm.harness.errors import ConnectionFailed, Failed, UsageError
from kuberay_llm.harness.kube import RAYSERVICE, ApiError, Kube, Unreachable, forbidden_message
from kuberay_llm.harness.serveconfig import Model, models

SERVE_PORT = 8000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    parser.add_argument("--endpoint", help="base URL of the Serve HTTP proxy (e.g. http://10.0.0.7:8000): no port-forward")
    parser.add_argument("--model", help="model id to query (default: each model_id of serveConfigV2; with --endpoint "
                                         "alone: checked as text)")
    parser.add_argument("--max-tokens", type=int, default=None, help="default 64, 512 for reasoning models")


def check_model(base_url: str, model: Model, max_tokens: int | None) -> None:
    smoke.check_model(base_url, model.model_id, kind=model.kind,
                      max_tokens=max_tokens or (512 if model.kind.reasoning else 64),
                      timeout_s=settings.smoke_timeout())


def run(args: argparse.Namespace) -> int:
    from kuberay_llm.harness.portforward import PortForward, pod_behind_service

    kube = None
    if not args.endpoint or not args.model:
        kube = Kube.connect(args.namespace)
        kube.check_reachable()
    targets: list[Model]
    if args.model and kube is None:
        targets = [Model(args.model, args.model, smoke.TEXT)]
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
        if args.model:  # its kind from the serve config when it is listed there
            targets = [t for t in targets if t.model_id == args.model] or [Model(args.model, args.model, smoke.TEXT)]
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
            print(f"== {model.model_id} ({model.model_source}): {model.kind.describe()}")
            check_model(base, model, args.max_tokens)
    print("smoke test passed")
    return 0
