"""Every `KUBERAY_LLM_*` environment variable of the CLI: named, defaulted and parsed here, and read when it is
used, never at import, so `--help` and the commands that do not use a setting work whatever it holds.

A bad value is a usage error (exit 2) that names the variable and the form it takes, e.g.
`KUBERAY_LLM_LOCAL_TIMEOUT: 'abc' is not a duration (use e.g. 90s, 15m, 1h)`. Durations are seconds unless a unit
is given: `90`, `90s`, `15m`, `1h`. tests/test_settings.py keeps every other module of the package from reading
the variables itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from kuberay_llm.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


# --- the forms a value takes ---------------------------------------------------------------------------------

def parse_duration(text: str, *, what: str) -> float:
    """`45m` -> 2700.0. A bad value is a usage error naming where it came from (a variable, `--timeout`)."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{what}: {text!r} is not a duration (use e.g. 90s, 15m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def duration(env: str, default: str) -> float:
    return parse_duration(os.environ.get(env, default), what=env)


def positive_int(env: str, default: int, unit: str) -> int:
    text = os.environ.get(env, str(default))
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"{env}: {text!r} is not a positive whole number of {unit} (e.g. {default})")
    return int(text)


def port(env: str, default: int) -> int:
    text = os.environ.get(env, str(default))
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{env}: {text!r} is not a TCP port (1-65535, e.g. {default})")
    return int(text)


def choice(env: str, default: str, allowed: tuple[str, ...]) -> str:
    text = os.environ.get(env, default)
    if text not in allowed:
        raise UsageError(f"{env}: {text!r} is not one of {', '.join(allowed)} (default {default})")
    return text


def path(env: str, default: Path) -> Path:
    text = os.environ.get(env)
    if text is not None and not text.strip():
        raise UsageError(f"{env}: empty; set it to a directory or unset it (default {default})")
    return Path(text) if text else default


# --- the harness: wait, status, diagnose, smoke, delete --------------------------------------------------------

def wait_timeout() -> float:
    """Whole `wait`: pulling a multi-GB image and loading weights takes long on a fresh node."""
    return duration("KUBERAY_LLM_WAIT_TIMEOUT", "45m")


def unschedulable_grace() -> float:
    """How long a pod may stay Unschedulable before `wait` fails: time for the Ray autoscaler and the
    cluster autoscaler (or GKE node auto-provisioning) to add a node."""
    return duration("KUBERAY_LLM_UNSCHEDULABLE_GRACE", "3m")


def scale_up_grace() -> float:
    """The Unschedulable grace while the cluster autoscaler reports that it is adding a node."""
    return duration("KUBERAY_LLM_SCALE_UP_GRACE", "15m")


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


def delete_timeout() -> float:
    """`delete --wait`: until KubeRay has deleted the RayService's cluster and pods."""
    return duration("KUBERAY_LLM_DELETE_TIMEOUT", "5m")


def log_lines() -> int:
    """Log lines per container that `wait` and `diagnose` print."""
    return positive_int("KUBERAY_LLM_LOG_LINES", 20, "lines")


def crashloop_restarts() -> int:
    """Restarts after which a container in CrashLoopBackOff fails `wait`. A Ray worker restarts once, by itself,
    when its raylet gives up on a slow dashboard agent (15 s in Ray 2.60) on a busy node: one is tolerated."""
    return positive_int("KUBERAY_LLM_CRASHLOOP_RESTARTS", 2, "restarts")


# --- the pinned tools and the work directory -----------------------------------------------------------------

def tool_timeout() -> float:
    """One run of a pinned tool (kustomize, helm, kubeconform)."""
    return duration("KUBERAY_LLM_TOOL_TIMEOUT", "120s")


def bin_dir(default: Path) -> Path:
    """Where `make tools` put the pinned binaries (./bin)."""
    return path("KUBERAY_LLM_BIN", default)


def work_dir(default: Path) -> Path:
    """Where the CLI keeps what it generates and runs (./.work): local runs, the local cluster, tiny overlays."""
    return path("KUBERAY_LLM_WORK", default)


# --- `kuberay-llm local` ---------------------------------------------------------------------------------------

def local_timeout() -> float:
    """How long `local` waits for the applications (and `local --bench` for standalone vllm serve) to be ready."""
    return duration("KUBERAY_LLM_LOCAL_TIMEOUT", "900s")


def local_kv_cache_bytes() -> int:
    """vLLM's KV cache on the CPU (VLLM_CPU_KVCACHE_SPACE is whole GiB; this is bytes, for the tiny model)."""
    return positive_int("KUBERAY_LLM_LOCAL_KV_CACHE_BYTES", 256 * 2**20, "bytes")


def dashboard_port() -> int:
    """The local Ray head's dashboard (and REST API) port on 127.0.0.1."""
    return port("KUBERAY_LLM_DASHBOARD_PORT", 8265)


def gcs_port() -> int:
    """The local Ray head's GCS port (not 6379, which a local Redis often holds)."""
    return port("KUBERAY_LLM_GCS_PORT", 6380)


def head_start_timeout() -> float:
    return duration("KUBERAY_LLM_HEAD_START_TIMEOUT", "120s")


def stop_timeout() -> float:
    """How long Serve may drain and the head's processes may exit before they are killed."""
    return duration("KUBERAY_LLM_STOP_TIMEOUT", "60s")


# --- `kuberay-llm cluster` -------------------------------------------------------------------------------------

def cluster_start_timeout() -> float:
    """Each control plane component of the local cluster, until it answers."""
    return duration("KUBERAY_LLM_CLUSTER_START_TIMEOUT", "180s")


def gpus() -> str:
    """`auto`: this machine's GPUs (nvidia-smi) become a node of the local cluster; `none`: no GPU node."""
    return choice("KUBERAY_LLM_GPUS", "auto", ("auto", "none"))


def nvidia_smi() -> str | None:
    """Another nvidia-smi binary than the one on PATH (tests give a stand-in)."""
    return os.environ.get("KUBERAY_LLM_NVIDIA_SMI") or None


def cluster_pod_cidr() -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The local cluster's pod network, where the automatic pick (the first free candidate) will not do."""
    text = os.environ.get("KUBERAY_LLM_CLUSTER_POD_CIDR")
    if not text:
        return None
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise UsageError(f"KUBERAY_LLM_CLUSTER_POD_CIDR: {text!r} is not a network (e.g. 10.244.0.0/16)") from None
