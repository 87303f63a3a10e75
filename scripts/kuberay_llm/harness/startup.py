"""How far a starting replica's engine has got, in vLLM's own words: the phase lines vLLM logs while it starts
(weights, torch.compile, KV cache, CUDA graphs), read from the Ray logs of the LLM server's actors.

A replica of Ray Serve LLM runs vLLM in its actor: the engine core is a child process of the replica (its output
goes to the replica's log) and, with Ray's executor (Ray Serve LLM forces distributed_executor_backend=ray:
ray/llm/_internal/serve/engines/vllm/vllm_models.py), the model runner that loads weights, compiles and captures
CUDA graphs is another actor, RayWorkerWrapper. Both logs come from the Ray dashboard's log API
(GET /api/v0/logs/file?actor_id=...&suffix=out, as `ray logs actor` reads them: ray/util/state/api.py), on the
head pod's dashboard port, port-forwarded through the Kubernetes API like `smoke` (the harness Role's
pods/portforward right; no other). The KubeRay and Serve statuses say only UPDATING for all of this, which for
a large model lasts 20-30 minutes.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass

DASHBOARD_PORT = 8265  # KubeRay's head container port `dashboard` (ray-operator/controllers/ray/utils/constant.go)
HTTP_TIMEOUT_S = 10.0
LOG_LINES = 2000

# The phases in start-up order, each with the vLLM 0.29 line that marks it (the file that prints it). A phase's
# time is the one its line carries; vLLM 0.26 prints the same lines.
PHASES = (
    ("engine", "engine configured", re.compile(r"Initializing a V1 LLM engine \(v([\w.+-]+)\)")),  # v1/engine/core.py
    ("load", "loading weights", re.compile(r"Starting to load model")),  # v1/worker/gpu_model_runner.py, cpu_model_runner.py
    ("loaded", "weights loaded", re.compile(r"Loading weights took ([\d.]+) seconds|Model loading took ([\d.]+) GiB")),
    # GPU: compilation/backends.py; CPU: v1/worker/cpu_model_runner.py
    ("compile", "torch.compile", re.compile(r"Dynamo bytecode transform time: ([\d.]+) s|"
                                            r"Warming up model for the compilation")),
    # GPU: compilation/monitor.py; CPU: compilation/decorators.py (its AOT-compiled function saved)
    ("compiled", "torch.compile done", re.compile(r"torch\.compile took ([\d.]+) s in total|saved AOT compiled function")),
    ("kv", "KV cache allocated", re.compile(r"GPU KV cache size: ([\d,]+) tokens")),  # v1/core/kv_cache_utils.py
    ("graphs", "CUDA graphs captured", re.compile(r"Graph capturing finished in ([\d.]+) secs")),  # gpu_model_runner.py
    ("ready", "engine ready", re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")),
)
# What is going on after each phase, until the next one's line appears.
NEXT = {None: "starting the engine", "engine": "starting the model runner", "load": "loading weights",
        "loaded": "profiling (torch.compile, if on)", "compile": "torch.compile", "compiled": "profiling memory",
        "kv": "capturing CUDA graphs or warming up", "graphs": "warming up", "ready": "engine ready: the replica "
        "starts serving"}
STAMP = re.compile(r"(?:INFO|WARNING|DEBUG) (\d\d-\d\d \d\d:\d\d:\d\d)")


@dataclass
class Phase:
    key: str
    label: str
    stamp: str | None  # "12-07 20:41:07" as vLLM prints it
    detail: str        # the number the line carries ("3.78 seconds"), or ""


def phases(text: str) -> list[Phase]:
    """The phases the log text reached, in start-up order. A replica that restarted (Serve retries a failed
    constructor) logs them again: each phase's last line counts, and a phase older than the last engine start
    belongs to an earlier attempt."""
    found: dict[str, Phase] = {}
    for line in text.splitlines():
        for key, label, rx in PHASES:
            if m := rx.search(line):
                stamp = STAMP.search(line)
                value = next((g for g in m.groups() if g), "")
                detail = {"engine": f"vLLM {value}", "loaded": f"{value} s" if "Loading weights" in line
                          else f"{value} GiB", "kv": f"{value} tokens"}.get(key, f"{value} s" if value else "")
                if key == "loaded" and key in found and "GiB" in detail:
                    continue  # keep "Loading weights took" (a time) over the memory line that follows it
                found[key] = Phase(key, label, stamp[1] if stamp else None, detail)
    start = found.get("engine")
    if start and start.stamp:
        found = {k: p for k, p in found.items() if not p.stamp or p.stamp >= start.stamp}
    order = [k for k, _, _ in PHASES]
    return sorted(found.values(), key=lambda p: order.index(p.key))


def summary(found: list[Phase]) -> str:
    """One line: each phase reached with its number, then what the engine is doing now."""
    last = found[-1].key if found else None
    done = ", ".join(f"{p.label}" + (f" ({p.detail})" if p.detail and p.key != "engine" else "") for p in found)
    now = NEXT[last]
    if not found:
        return f"vLLM: no start-up line yet ({now})"
    version = next((p.detail for p in found if p.key == "engine"), "")
    return f"{version or 'vLLM'}: {done} | now: {now}" if last != "ready" else f"{version or 'vLLM'}: {done}"


def _get(base: str, path: str, query: dict) -> bytes:
    url = f"{base}{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        return response.read()


def llm_actor_logs(base: str) -> dict[str, str]:
    """The logs of the alive LLM server replicas and their vLLM worker actors, from the dashboard at `base`
    (http://host:port): {"<class_name> <actor_id>": text}."""
    listed = json.loads(_get(base, "/api/v0/actors", {"detail": "false", "limit": "1000", "filter_keys": "state",
                                                     "filter_predicates": "=", "filter_values": "ALIVE"}))
    actors = ((listed.get("data") or {}).get("result") or {}).get("result") or []
    logs = {}
    for actor in actors:
        name = actor.get("class_name") or ""
        if "LLMServer" in name or "RayWorkerWrapper" in name or "LLMDeployment" in name:
            text = _get(base, "/api/v0/logs/file", {"actor_id": actor["actor_id"], "lines": str(LOG_LINES),
                                                    "suffix": "out"}).decode("utf-8", errors="replace")
            logs[f"{name} {actor['actor_id']}"] = text
    return logs


def replica_startup(base: str) -> str | None:
    """The start-up line of the LLM server replicas behind the dashboard at `base`, or None where it has none."""
    logs = llm_actor_logs(base)
    if not logs:
        return None
    return summary(phases("\n".join(logs.values())))
