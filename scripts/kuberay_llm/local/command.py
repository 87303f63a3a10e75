"""`kuberay-llm local OVERLAY`: run an overlay's serve config on this machine with real Ray Serve LLM and vLLM (CPU).

The overlay is rendered, its RayService's serveConfigV2 made runnable here (each replacement printed),
and submitted the way the KubeRay operator does it: `PUT /api/serve/applications/` on the head's
dashboard (port 8265), then `GET /api/serve/applications/?api_type=declarative` until every
application is RUNNING and its deployments HEALTHY. Then an OpenAI smoke test on port 8000.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

from kuberay_llm import serveconfig, settings, smoke, toolchain
from kuberay_llm.errors import ToolMissing, UserError
from kuberay_llm.local import ray_head
from kuberay_llm.local.serve_config import llm_configs_of, localize, serve_config_of
from kuberay_llm.local.serve_status import wait_for_applications
from kuberay_llm.preflight.serving_patterns import DIRECT_STREAMING
from kuberay_llm.render import render_overlay

DEFAULT_OVERLAY = "local-cpu"


def local_work_dir() -> Path:
    return toolchain.work_dir() / "local"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overlay", nargs="?", default=DEFAULT_OVERLAY,
                        help=f"overlay name or directory (default: {DEFAULT_OVERLAY})")
    parser.add_argument("--component", action="append", default=[], metavar="NAME",
                        help="add manifests/components/NAME to the overlay: prefix-routing, high-throughput "
                             "(repeatable)")
    parser.add_argument("--keep", action="store_true", help="leave it running and print how to call it")
    parser.add_argument("--stop", action="store_true", help="stop an instance left running by --keep")


def require_stack() -> None:
    missing = [m for m in ("vllm", "torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ToolMissing(f"the local CPU stack is not installed ({', '.join(missing)} missing): run `make setup-local`")


def prepare(overlay: str, work_dir: Path, components: list[str] = (), replicas: int | None = None
            ) -> tuple[dict, list, list[str], dict[str, str]]:
    """(serve config to submit, replacements, application names, head env) for `overlay` plus `components`,
    with the tiny model ready."""
    from kuberay_llm.local import components as local_components

    rendered = render_overlay(overlay)
    if components:
        rendered, notes = local_components.render_with(overlay, list(components), work_dir, rendered)
        for note in notes:
            print(note)
    env = local_components.head_env(rendered)
    service, config = serve_config_of(rendered)
    model = tiny_model_of(work_dir, rendered.source)
    local_config, changes = localize(config, model_path=model, kv_cache_bytes=settings.local_kv_cache_bytes(),
                                     replicas=replicas, direct_streaming=env.get(DIRECT_STREAMING) == "1")
    print(f"{rendered.source}: RayService/{service}, applications: "
          + ", ".join(a.get("name", "default") for a in local_config["applications"]))
    print(f"replaced {len(changes)} value(s) that cannot run on this machine:")
    for change in changes:
        print(f"  {change}")
    if env:
        print("the head container's Serve flags, set on `ray start`: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return local_config, changes, [a.get("name", "default") for a in local_config["applications"]], env


def tiny_model_of(work_dir: Path, source: str):
    """localize's model_path: each LLMConfig gets the tiny model of its kind (smoke.kind_of, read from its
    engine_kwargs): a Qwen2.5-VL for vision, a Qwen3 for hybrid reasoning, a Llama otherwise."""
    from kuberay_llm.local.tiny_model import TINY_MODELS, architecture_for, ensure_tiny_model

    def model_for(llm: dict) -> tuple[str, str]:
        entry = serveconfig.LLMEntry("", 0, 0, "", llm)
        try:
            architecture = architecture_for(smoke.kind_of(entry))
        except UserError as err:
            raise UserError(f"{source}: model {entry.model_id} ({entry.model_source}): {err}") from None
        return str(ensure_tiny_model(work_dir, architecture)), TINY_MODELS[architecture]

    return model_for


def kinds_of(config: dict) -> dict[str, smoke.Kind]:
    """model id -> its kind, read from the localized config (it keeps every engine_kwarg a kind comes from)."""
    return {e.model_id: smoke.kind_of(e) for e in serveconfig.from_data(config).llm_entries if e.model_id}


def model_ids(config: dict) -> list[str]:
    return [c["model_loading_config"]["model_id"] for app in config["applications"] for c in llm_configs_of(app)]


def deploy(head: ray_head.RayHead, config: dict, apps: list[str], sample_memory=None) -> float:
    """PUT the config like the KubeRay operator, wait until RUNNING/HEALTHY; return the seconds it took."""
    start = time.monotonic()
    ray_head.http("PUT", f"{head.dashboard_url}/api/serve/applications/", json.loads(json.dumps(config)))
    last_print = [0.0]

    def fetch() -> dict:
        if sample_memory:
            sample_memory()
        status = ray_head.http("GET", f"{head.dashboard_url}/api/serve/applications/?api_type=declarative")
        return status.get("applications") or {}

    def progress(elapsed, verdict) -> None:
        if elapsed - last_print[0] >= 15 or verdict.state != "waiting":
            last_print[0] = elapsed
            print(f"  [{elapsed:5.0f}s] {verdict.message}", flush=True)

    wait_for_applications(fetch, apps, timeout_s=settings.local_timeout(), on_progress=progress)
    return time.monotonic() - start


def stop_kept(work_dir: Path) -> int:
    head = ray_head.load_head(work_dir)
    if head is None:
        print("no kept local instance")
        return 0
    left = ray_head.stop_head(head)
    if left:
        raise UserError(f"processes still alive after stopping: {left}")
    print(f"stopped the local instance (Ray head pid {head.pid})")
    return 0


def check_settings() -> None:
    """Read every setting a local run uses now, so that a bad value fails before the Ray head starts."""
    for read in (settings.local_timeout, settings.local_kv_cache_bytes, settings.dashboard_port, settings.gcs_port,
                 settings.head_start_timeout, settings.stop_timeout):
        read()


def run(args: argparse.Namespace) -> int:
    work_dir = local_work_dir()
    check_settings()
    if args.stop:
        return stop_kept(work_dir)
    require_stack()
    config, _, apps, env = prepare(args.overlay, work_dir, args.component)
    print(f"starting a Ray head (dashboard http://{ray_head.HOST}:{settings.dashboard_port()}) ...", flush=True)
    head = ray_head.start_head(work_dir, env)
    sample_memory = ray_head.peak_tracker(head.pid)
    keep = False
    try:
        print("PUT /api/serve/applications/ (as the KubeRay operator does); waiting for RUNNING ...", flush=True)
        seconds = deploy(head, config, apps, sample_memory)
        print(f"ready in {seconds:.0f}s")
        for model_id, kind in kinds_of(config).items():
            print(f"== smoke test {model_id}: {kind.describe()}")
            # The tiny model is slow on CPU and its text is random: few tokens say as much as many.
            result = smoke.check_model(head.serve_url, model_id, kind=kind, max_tokens=16)
            sample_memory()
            print(f"smoke test {model_id} passed: chat {result.completion_tokens} tokens in "
                  f"{result.chat_seconds:.1f}s: {result.reply!r}; stream {result.stream_chunks} chunks; "
                  f"{len(result.checks)} {kind.name} checks ok")
        from kuberay_llm.local.components import took_effect

        for line in took_effect(head, config, env):
            print(line)
        print(f"peak memory of the local stack: {sample_memory() / 2**30:.1f} GiB")
        keep = args.keep
    finally:
        if keep:
            model_id = model_ids(config)[0]
            print(f"\nleft running (Ray head pid {head.pid}). Call it:\n"
                  f"  curl -s {head.serve_url}/v1/chat/completions -H 'Content-Type: application/json' "
                  f"-d '{{\"model\": \"{model_id}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'\n"
                  f"Ray dashboard: {head.dashboard_url}\nStop it: kuberay-llm local --stop")
        else:
            left = ray_head.stop_head(head)
            if left:
                raise UserError(f"processes still alive after stopping: {left}")
            print("stopped: Serve shut down, Ray head and all its processes gone")
    return 0
