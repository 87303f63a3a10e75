"""`kuberay-llm local OVERLAY --component NAME`: the overlay plus Serve's opt-in components, rendered by kustomize
exactly as an overlay that lists them would be, so the component's own files supply every setting.

What a local Ray head takes from each component (LOCAL_COMPONENTS; the other components change only Kubernetes
objects, which a local head has none of):
- prefix-routing: its replacement writes request_router_config (PrefixCacheAffinityRouter) into the serve config
  between the tier's marker line. A tier without the marker (local-cpu) gets it added to each llm_config of a
  copy of its serve config under the work dir, the one line a tier writes to opt in; the rendering is then the
  component's. localize() runs two replicas so that the router has a choice.
- high-throughput: its flags are container env of the head and workers (the Serve controller, proxies and
  replicas read them when they start); here the head is `ray start`, so they become its environment.

Not run on CPU: the sample's VLLM_USE_RAY_V2_EXECUTOR_BACKEND (it picks the executor of vLLM's "ray" backend,
and Ray Serve LLM gives a CPU accelerator the "mp" one: ray/llm/_internal/serve/engines/vllm/vllm_models.py), and
the P/D and DP builders (serve_config.NOT_RUN_LOCALLY says why for each).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import yaml

from kuberay_llm import toolchain
from kuberay_llm.errors import Failed, UserError
from kuberay_llm.preflight.serving_patterns import (CLUSTER_FLAGS, DIRECT_STREAMING, FORWARD_BODY, HA_PROXY, MARKER,
                                                    THROUGHPUT)
from kuberay_llm.render import Rendered, display_name, kustomize_build, parse_objects, resolve_overlay

COMPONENTS_DIR = toolchain.MANIFESTS_DIR / "components"
SERVE_CONFIG_COMPONENT = COMPONENTS_DIR / "serve-config"
LOCAL_COMPONENTS = ("prefix-routing", "high-throughput")
# The head container env a local `ray start` takes over: Serve's process-level flags (preflight's list).
HEAD_ENV_FLAGS = (*CLUSTER_FLAGS, FORWARD_BODY)


def check_names(components: list[str]) -> None:
    for name in components:
        if name not in LOCAL_COMPONENTS:
            known = sorted(p.name for p in COMPONENTS_DIR.iterdir() if (p / "kustomization.yaml").is_file())
            what = ("changes only Kubernetes objects, which a local Ray head has none of" if name in known
                    else "is not a component in manifests/components")
            raise UserError(f"--component {name}: {what}; `kuberay-llm local` runs {', '.join(LOCAL_COMPONENTS)}")
    if len(set(components)) != len(components):
        raise UserError(f"--component {', '.join(components)}: each component once")


def render_with(overlay: str, components: list[str], work_dir: Path, base: Rendered) -> tuple[Rendered, list[str]]:
    """(the overlay + components rendered, notes on what was added to make that possible). `base` is the overlay
    rendered alone; the generated kustomization lives in work_dir/overlay (rewritten on every run)."""
    check_names(components)
    overlay_dir = resolve_overlay(overlay)
    gen = work_dir / "overlay"
    shutil.rmtree(gen, ignore_errors=True)
    gen.mkdir(parents=True)
    notes: list[str] = []
    kustomization: dict = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                           "resources": [_rel(overlay_dir, gen)], "components": []}
    service = next(o for o in base.objects if o.get("kind") == "RayService")
    text = str((service.get("spec") or {}).get("serveConfigV2") or "")
    if "prefix-routing" in components and MARKER not in text:
        (gen / "serve-config.yaml").write_text(with_marker(text))
        kustomization["configMapGenerator"] = [{
            "name": "serve-config", "behavior": "replace", "files": ["serveConfigV2=serve-config.yaml"],
            "options": {"disableNameSuffixHash": True,
                        "annotations": {"config.kubernetes.io/local-config": "true"}}}]
        kustomization["components"].append(_rel(SERVE_CONFIG_COMPONENT, gen))
        notes.append(f"{base.source} has no `{MARKER}: {{}} # {MARKER}` line: added it to each llm_config's "
                     f"deployment_config in {display_name(gen / 'serve-config.yaml')} (how a tier opts in)")
    kustomization["components"] += [_rel(COMPONENTS_DIR / name, gen) for name in components]
    (gen / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    source = " + ".join([base.source, *(f"components/{name}" for name in components)])
    out = kustomize_build(gen)
    return Rendered(source=source, objects=parse_objects(out, source), text=out), notes


def with_marker(serve_config_text: str) -> str:
    """The serve config with `request_router_config: {} # request_router_config` in every llm_config's
    deployment_config (the marker prefix-routing replaces)."""
    config = yaml.safe_load(serve_config_text)
    for app in config.get("applications") or []:
        for llm in (app.get("args") or {}).get("llm_configs") or []:
            llm.setdefault("deployment_config", {})[MARKER] = {}
    dumped = yaml.safe_dump(config, sort_keys=False)
    return re.sub(rf"^(\s*){MARKER}: \{{\}}$", rf"\1{MARKER}: {{}} # {MARKER}", dumped, flags=re.M)


def head_env(rendered: Rendered) -> dict[str, str]:
    """Serve's process-level flags from the RayService's head container env (KubeRay runs Ray in containers[0])."""
    service = next(o for o in rendered.objects if o.get("kind") == "RayService")
    head = ((((service.get("spec") or {}).get("rayClusterConfig") or {}).get("headGroupSpec") or {})
            .get("template") or {}).get("spec") or {}
    containers = head.get("containers") or [{}]
    env = {e.get("name"): e.get("value") for e in containers[0].get("env") or [] if isinstance(e, dict)}
    return {name: str(env[name]) for name in HEAD_ENV_FLAGS if env.get(name) is not None}


def _rel(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


# --- did each setting take effect? Read from Ray's own state, logs and processes. --------------------------

# Two prompts with long, different openings, each sent AFFINITY_REQUESTS times one after another: a prefix-aware
# router sends each prompt's requests to one replica; Serve's default (power of two choices) spreads them.
AFFINITY_PROMPTS = {
    "a": "You are the support assistant of a GPU cloud. Answer in one short sentence, politely, and never invent "
         "prices. Question {i}: how do I resize a node pool?",
    "b": "Translate the following Kubernetes event into plain English for an on-call engineer who just woke up. "
         "Event {i}: FailedScheduling 0/3 nodes are available.",
}
AFFINITY_REQUESTS = 4
THROUGHPUT_LOG = "Throughput optimized Ray Serve enabled with the following configurations:"  # controller.py
ACCESS_LINE = re.compile(r" (?P<replica>\w+) (?P<request>kuberay-llm-affinity-\S+) -- ")


def took_effect(head, config: dict, env: dict[str, str]) -> list[str]:
    """One line per setting saying how Ray shows it in effect; UserError where it does not."""
    from kuberay_llm.local.serve_config import llm_configs_of

    lines = []
    for app in config["applications"]:
        for llm in llm_configs_of(app):
            router = ((llm.get("deployment_config") or {}).get("request_router_config") or {}).get(
                "request_router_class")
            if router:
                lines += router_evidence(head, app.get("name", "default"), llm, router)
    if env.get(HA_PROXY) == "1":
        lines.append(haproxy_evidence(head))
    if env.get(DIRECT_STREAMING) == "1":
        lines += [direct_streaming_evidence(head, app.get("name", "default")) for app in config["applications"]]
    if env.get(THROUGHPUT) == "1":
        lines.append(throughput_evidence(head))
    return lines


def router_evidence(head, app: str, llm: dict, router: str) -> list[str]:
    """Each affinity prompt's requests on one replica (Ray's replica access logs), and for
    PrefixCacheAffinityRouter its PrefixTreeActor alive (Ray's actor table)."""
    from kuberay_llm.local import ray_head

    lines = []
    for key, replicas in affinity(head, app, llm["model_loading_config"]["model_id"]).items():
        lines.append(f"request router {router.rsplit(':', 1)[-1]}: prompt {key}: its {len(replicas)} requests "
                     f"served by replica {', '.join(sorted(set(replicas)))} (Ray's replica access logs)")
        if len(set(replicas)) != 1:
            raise Failed(f"application {app}: request_router_config {router} did not take effect: prompt {key}'s "
                         f"requests went to replicas {', '.join(replicas)}")
    if router.endswith(":PrefixCacheAffinityRouter"):
        actors = ray_head.http("GET", f"{head.dashboard_url}/api/v0/actors?filter_keys=class_name&"
                                      "filter_predicates=%3D&filter_values=PrefixTreeActor&detail=true")
        alive = [a for a in ((actors.get("data") or {}).get("result") or {}).get("result") or []
                 if a.get("state") == "ALIVE"]
        if not alive:
            raise Failed(f"application {app}: no PrefixTreeActor is alive: PrefixCacheAffinityRouter never "
                         "initialized")
        lines.append(f"request router PrefixCacheAffinityRouter: its PrefixTreeActor is ALIVE in Ray namespace "
                     f"{alive[0].get('ray_namespace')} (Ray's actor table)")
    return lines


def affinity(head, app: str, model_id: str) -> dict[str, list[str]]:
    """prompt key -> the replica that served each of its AFFINITY_REQUESTS requests, sent one after another with
    their own X-Request-Id and found in Ray's replica access logs."""
    sent = {}
    for key, prompt in AFFINITY_PROMPTS.items():
        for i in range(AFFINITY_REQUESTS):
            request_id = f"kuberay-llm-affinity-{key}-{i}-{time.monotonic_ns()}"
            _post_chat(head.serve_url, model_id, prompt.format(i=i), request_id)
            sent[request_id] = key
    served = _replicas_of(head, app, set(sent), deadline_s=30)
    return {key: [served[r] for r, k in sent.items() if k == key] for key in AFFINITY_PROMPTS}


def _post_chat(base_url: str, model_id: str, text: str, request_id: str) -> None:
    import urllib.request

    body = json.dumps({"model": model_id, "messages": [{"role": "user", "content": text}], "max_tokens": 2}).encode()
    request = urllib.request.Request(f"{base_url}/v1/chat/completions", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Request-Id": request_id})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
    except OSError as exc:
        raise Failed(f"POST {base_url}/v1/chat/completions: {getattr(exc, 'reason', exc)}") from None


def _replicas_of(head, app: str, request_ids: set[str], deadline_s: float) -> dict[str, str]:
    """request id -> replica id, from Ray's serve replica logs (they can lag a little behind the response)."""
    logs = Path(head.work_dir) / "ray" / "session_latest" / "logs" / "serve"
    end = time.monotonic() + deadline_s
    while True:
        found = {}
        for path in logs.glob(f"replica_{app}_LLMServer*.log"):
            for match in ACCESS_LINE.finditer(path.read_text(errors="replace")):
                if match["request"] in request_ids:
                    found[match["request"]] = match["replica"]
        if len(found) == len(request_ids) or time.monotonic() > end:
            missing = request_ids - set(found)
            if missing:
                raise Failed(f"application {app}: {len(missing)} request(s) are in no replica log under {logs}")
            return found
        time.sleep(1)


def haproxy_evidence(head) -> str:
    import psutil

    from kuberay_llm.local import ray_head

    for proc in ray_head.tree(head.pid):
        try:
            if proc.name() == "haproxy":
                ports = sorted({c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == "LISTEN"})
                if ray_head.SERVE_PORT not in ports:
                    raise Failed(f"HAProxy (pid {proc.pid}) does not listen on port {ray_head.SERVE_PORT}: {ports}")
                return (f"{HA_PROXY}: HAProxy pid {proc.pid} ({proc.exe()}) listens on port {ray_head.SERVE_PORT} "
                        f"(process table)")
        except (OSError, psutil.Error):
            continue
    raise Failed(f"{HA_PROXY}=1 but no haproxy process runs under the Ray head (pid {head.pid})")


def direct_streaming_evidence(head, app: str) -> str:
    from kuberay_llm.local import ray_head

    status = ray_head.http("GET", f"{head.dashboard_url}/api/serve/applications/")
    details = (status.get("applications") or {}).get(app) or {}
    deployments = sorted(details.get("deployments") or {})
    if not deployments or any("Ingress" in d for d in deployments):
        raise Failed(f"{DIRECT_STREAMING}=1 but application {app} runs deployments {', '.join(deployments)}")
    return (f"{DIRECT_STREAMING}: application {app} runs {', '.join(deployments)} only, the LLM server as its "
            f"ingress (no OpenAiIngress; Serve's application status)")


def throughput_evidence(head) -> str:
    """The Serve controller logs what RAY_SERVE_THROUGHPUT_OPTIMIZED turned on (controller.py,
    _log_throughput_opt_message), to its worker's stderr file or its serve log."""
    logs = Path(head.work_dir) / "ray" / "session_latest" / "logs"
    for path in sorted(logs.glob("worker-*.err")) + sorted(logs.glob("serve/controller_*.log")):
        text = path.read_text(errors="replace")
        if THROUGHPUT_LOG in text:
            bullets = [line.strip(" •") for line in text.split(THROUGHPUT_LOG, 1)[1].splitlines()[1:8]
                       if line.startswith("  • ")]
            return f"{THROUGHPUT}: the Serve controller logged {'; '.join(bullets)} ({path.name})"
    raise Failed(f"{THROUGHPUT}=1 but the Serve controller's log under {logs} does not say {THROUGHPUT_LOG!r}")
