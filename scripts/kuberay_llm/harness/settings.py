"""Every timeout and grace period of the harness, named once, each overridable by an environment variable.

Values are seconds unless the name says otherwise; durations accept `90`, `90s`, `15m`, `1h`.
"""

from __future__ import annotations

import os
import re

from kuberay_llm.harness.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, *, what: str) -> float:
    """`45m` -> 2700.0. A bad value is a usage error naming where it came from."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{what}: {text!r} is not a duration (use e.g. 90s, 15m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def duration(env: str, default: str) -> float:
    return parse_duration(os.environ.get(env, default), what=env)


def wait_timeout() -> float:
    """Whole `wait`: pulling a multi-GB image and loading weights takes long on a fresh node."""
    return duration("KUBERAY_LLM_WAIT_TIMEOUT", "45m")


def unschedulable_grace() -> float:
    """How long a pod may stay Unschedulable before `wait` fails: time for the Ray autoscaler and the
    cluster autoscaler (or GKE node auto-provisioning) to add a node."""
    return duration("KUBERAY_LLM_UNSCHEDULABLE_GRACE", "3m")


def unhealthy_grace() -> float:
    """How long an application may stay UNHEALTHY (Serve restarting a replica) before `wait` fails."""
    return duration("KUBERAY_LLM_UNHEALTHY_GRACE", "30s")


def image_pull_grace() -> float:
    """How long a container may stay in ErrImagePull/ImagePullBackOff (a registry hiccup) before `wait`
    fails. "not found", "unauthorized" and "denied" fail at once."""
    return duration("KUBERAY_LLM_IMAGE_PULL_GRACE", "60s")


def config_settle() -> float:
    """How long a RayService that looks healthy right after KubeRay submitted a new serve config must stay so
    before it counts: KubeRay writes that reconcile's status from what Ray reported before the submission, and
    reads Ray again every 2 s (see health.config_submitted_unanswered)."""
    return duration("KUBERAY_LLM_CONFIG_SETTLE", "10s")


def request_timeout() -> float:
    """One API request (list, get, apply)."""
    return duration("KUBERAY_LLM_REQUEST_TIMEOUT", "15s")


def watch_timeout() -> float:
    """Server-side timeout of one watch; the harness re-watches from the last resourceVersion."""
    return duration("KUBERAY_LLM_WATCH_TIMEOUT", "5m")


def reconnect_backoff_max() -> float:
    """Longest pause between reconnect attempts while the API server is unreachable."""
    return duration("KUBERAY_LLM_RECONNECT_BACKOFF_MAX", "2s")


def connect_timeout() -> float:
    """How long a command retries an unreachable API server at start before giving up (exit 3)."""
    return duration("KUBERAY_LLM_CONNECT_TIMEOUT", "10s")


def port_forward_timeout() -> float:
    return duration("KUBERAY_LLM_PORT_FORWARD_TIMEOUT", "30s")


def smoke_timeout() -> float:
    """One OpenAI request of `smoke` (a cold model can take a while for the first token)."""
    return duration("KUBERAY_LLM_SMOKE_TIMEOUT", "5m")


def log_lines() -> int:
    """Log lines per container that `wait` and `diagnose` print."""
    text = os.environ.get("KUBERAY_LLM_LOG_LINES", "20")
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"KUBERAY_LLM_LOG_LINES: {text!r} is not a positive whole number of lines (e.g. 20)")
    return int(text)


def crashloop_restarts() -> int:
    """Restarts after which a container in CrashLoopBackOff fails `wait`. A Ray worker restarts once, by itself,
    when its raylet gives up on a slow dashboard agent (15 s in Ray 2.60) on a busy node: one is tolerated."""
    text = os.environ.get("KUBERAY_LLM_CRASHLOOP_RESTARTS", "2")
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"KUBERAY_LLM_CRASHLOOP_RESTARTS: {text!r} is not a positive whole number of restarts (e.g. 2)")
    return int(text)
