"""`kuberay-llm bench`: load an OpenAI-compatible endpoint at several concurrency levels with `vllm bench serve`
(fixed input/output lengths) and write the TTFT/TPOT/ITL/E2E percentiles and throughput per level as JSON,
with a PNG plot.

Targets: `--endpoint URL` (any OpenAI-compatible server: vLLM, Ray Serve LLM, `kuberay-llm local --keep`), or a
RayService NAME, reached like `kuberay-llm smoke` does (port-forward over the Kubernetes API to a pod behind
`<name>-serve-svc:8000`), its model id and tokenizer read from spec.serveConfigV2.
Exit codes (kuberay_llm/exitcodes.py): 0 ok, 1 requests failed, 2 usage, 3 endpoint unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from kuberay_llm import exitcodes, toolchain
from kuberay_llm.errors import UserError
from kuberay_llm.loadgen import plot, sweep

SERVE_PORT = 8000


class Unreachable(UserError):
    exit_code = exitcodes.UNAVAILABLE


def _levels(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 1,8,64") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every concurrency must be at least 1")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="RayService name (port-forward to <name>-serve-svc:8000); "
                                                "omit with --endpoint")
    parser.add_argument("-n", "--namespace", help="namespace of the RayService (default: the kube context's)")
    parser.add_argument("--endpoint", help="base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="served model id (default with NAME: its serveConfigV2's first model_id)")
    parser.add_argument("--tokenizer", help="Hugging Face id or local directory the prompts are built with "
                                            "(default: the model's model_source with NAME, else --model)")
    parser.add_argument("--concurrency", type=_levels, default=[1, 8, 64], help="levels, default 1,8,64")
    parser.add_argument("--input-len", type=int, default=512, help="prompt tokens (default 512)")
    parser.add_argument("--output-len", type=int, default=256, help="output tokens, with ignore_eos (default 256)")
    parser.add_argument("--prompts-per-level", type=int, default=4,
                        help="requests per level = max(--min-prompts, this x concurrency) (default 4)")
    parser.add_argument("--min-prompts", type=int, default=16, help="default 16")
    parser.add_argument("--warmups", type=int, default=0, help="uncounted requests before each level (default 0)")
    parser.add_argument("--api", choices=("completions", "chat"), default="completions",
                        help="/v1/completions (default) or /v1/chat/completions")
    parser.add_argument("--out", type=Path, help="directory for bench.json and bench.png "
                                                 "(default results/bench-<time>)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole sweep (default 1800)")


def served_models(base_url: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/v1/models", timeout=15) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise Unreachable(f"{base_url}/v1/models: {reason} (is the server up? `kuberay-llm status NAME` for a "
                          "RayService)") from None
    return [m.get("id") for m in body.get("data", [])]


def _print_table(result: dict) -> None:
    print(f"{'conc':>5} {'requests':>8} {'out tok/s':>10} {'TTFT p50':>9} {'p99':>8} {'TPOT p50':>9} {'p99':>7} "
          f"{'ITL p50':>8} {'p99':>7}  (ms)")
    for lv in result["levels"]:
        print(f"{lv['concurrency']:>5} {lv.get('completed', 0):>8} {lv.get('output_throughput', 0):>10.1f} "
              f"{lv.get('p50_ttft_ms', 0):>9.1f} {lv.get('p99_ttft_ms', 0):>8.1f} {lv.get('p50_tpot_ms', 0):>9.2f} "
              f"{lv.get('p99_tpot_ms', 0):>7.2f} {lv.get('p50_itl_ms', 0):>8.2f} {lv.get('p99_itl_ms', 0):>7.2f}")


def _rayservice_target(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str, str, str]:
    from kuberay_llm.harness.errors import ConnectionFailed, Failed
    from kuberay_llm.harness.kube import RAYSERVICE, ApiError, Kube, Unreachable as KubeUnreachable, forbidden_message
    from kuberay_llm.harness.portforward import PortForward, pod_behind_service
    from kuberay_llm.harness.serveconfig import models

    kube = Kube.connect(args.namespace)
    kube.check_reachable()
    try:
        rayservice = kube.get(RAYSERVICE.path(kube.namespace, args.name))
    except ApiError as err:
        raise ConnectionFailed(forbidden_message(err) if err.status in (401, 403) else err.message) from None
    except KubeUnreachable as exc:
        raise ConnectionFailed(str(exc)) from None
    if rayservice is None:
        raise Failed(f"RayService {kube.namespace}/{args.name} not found")
    found = models(rayservice)
    chosen = [m for m in found if m.model_id == args.model] if args.model else found[:1]
    if not chosen:
        ids = ", ".join(m.model_id for m in found) or "none"
        raise UserError(f"RayService {args.name}: no model {args.model or ''} in spec.serveConfigV2 (it serves {ids})")
    pod, port = pod_behind_service(kube, f"{args.name}-serve-svc", SERVE_PORT)
    local = stack.enter_context(PortForward(kube, pod, port))
    print(f"port-forward 127.0.0.1:{local} -> pod {pod}:{port} ({args.name}-serve-svc:{SERVE_PORT})")
    return f"http://127.0.0.1:{local}", chosen[0].model_id, args.tokenizer or chosen[0].model_source


def run(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.endpoint):
        raise UserError("give a RayService NAME or --endpoint URL (one of them)")
    if args.endpoint and not args.model:
        raise UserError("--endpoint needs --model (the served model id, see GET /v1/models)")
    with contextlib.ExitStack() as stack:
        if args.endpoint:
            base, model, tokenizer = args.endpoint.rstrip("/"), args.model, args.tokenizer or args.model
        else:
            base, model, tokenizer = _rayservice_target(args, stack)
        spec = sweep.SweepSpec(base_url=base, model=model, tokenizer=tokenizer, concurrency=args.concurrency,
                               input_len=args.input_len, output_len=args.output_len,
                               prompts_per_level=args.prompts_per_level, min_prompts=args.min_prompts,
                               warmups=args.warmups, timeout_s=args.timeout,
                               endpoint="/v1/chat/completions" if args.api == "chat" else "/v1/completions")
        sweep.validate(spec)
        served = served_models(base)
        if model not in served:
            raise UserError(f"{base} does not serve model {model!r}: it serves {', '.join(served) or 'none'}")
        print(f"bench: {base} model {model}, {spec.input_len} in / {spec.output_len} out tokens, concurrency "
              f"{','.join(map(str, spec.concurrency))}", flush=True)
        result = sweep.run(spec, log=lambda msg: print(msg, flush=True))
    result.update({"endpoint": args.endpoint or f"RayService {args.name}", "date_utc":
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    out = args.out or (toolchain.REPO_ROOT / "results" / time.strftime("bench-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    plot.plot([(model, result)], out / "bench.png",
              title=f"{model} at {result['endpoint']}: {spec.input_len} in / {spec.output_len} out tokens")
    _print_table(result)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    if result["failed_requests"]:
        print(f"FAILED: {result['failed_requests']} requests failed")
        return exitcodes.FAILED
    return exitcodes.OK
