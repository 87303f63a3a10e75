"""A Ray head on this machine, started and stopped by process id, and its dashboard's Serve REST API.

`ray start --head --block` runs in its own session; stopping it sends SIGTERM to that process group
(the blocking `ray start` then stops the raylet, GCS, dashboard and workers it started), waits a few
seconds (STOP_GRACE_S), and SIGKILLs any descendant still alive. Unlike `ray stop`, this never touches another Ray on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kuberay_llm import settings
from kuberay_llm.errors import UserError

HOST = "127.0.0.1"
SERVE_PORT = 8000  # Ray Serve's default HTTP port, as on the RayService's serve Service
HTTP_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0  # after SIGTERM, before SIGKILL (stop_head)


@dataclass
class RayHead:
    pid: int  # the `ray start --block` process; also its process group id
    work_dir: str
    dashboard_url: str = field(default_factory=lambda: f"http://{HOST}:{settings.dashboard_port()}")
    serve_url: str = f"http://{HOST}:{SERVE_PORT}"

    @property
    def log_path(self) -> Path:
        return Path(self.work_dir) / "ray-start.log"


def state_file(work_dir: Path) -> Path:
    return work_dir / "instance.json"


def stack_env(work_dir: Path) -> dict[str, str]:
    """The environment of every process of the local stack: offline, no auth on loopback, caches in work_dir."""
    tmp, haproxy = work_dir / "tmp", haproxy_dir(work_dir)
    for d in (tmp, work_dir / "vllm-cache", work_dir / "hf", haproxy):
        d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        # Ray 2.60 turns token auth on from ~/.ray state; the dashboard here listens on loopback only.
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TMPDIR": str(tmp),  # vLLM's ZMQ IPC sockets and torch's compile files
        "VLLM_CACHE_ROOT": str(work_dir / "vllm-cache"),
        "HF_HOME": str(work_dir / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        # HAProxy's files (read only under RAY_SERVE_ENABLE_HA_PROXY=1) default to /tmp/haproxy-serve, shared by
        # every Ray on the machine (ray/serve/_private/constants.py): this stack's get a directory of their own.
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
    })
    return env


def haproxy_dir(work_dir: Path) -> Path:
    """A short directory for HAProxy's files: Ray puts them under <this>/<56-character node id>/, and HAProxy
    refuses an admin socket path over 97 characters ("socket path ... too long (max 97)"), so not work_dir."""
    digest = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"kuberay-llm-{digest}"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def http(method: str, url: str, body: dict | None = None, timeout: float = HTTP_TIMEOUT_S) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        raise UserError(f"{method} {url}: HTTP {exc.code}: {detail[-2000:]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from None
    return json.loads(text) if text.strip() else {}


def start_head(work_dir: Path, env: dict[str, str] | None = None) -> RayHead:
    """Start a Ray head with its dashboard on loopback and wait until the dashboard answers. `env`: variables
    the RayService's head container sets (Serve's process-level flags), given to `ray start` the same way."""
    work_dir.mkdir(parents=True, exist_ok=True)
    dashboard_port, gcs_port = settings.dashboard_port(), settings.gcs_port()
    start_timeout = settings.head_start_timeout()
    for port, what in ((dashboard_port, "dashboard"), (SERVE_PORT, "Serve HTTP"), (gcs_port, "GCS")):
        if port_in_use(port):
            hint = " (a kept instance? `kuberay-llm local --stop`)" if state_file(work_dir).exists() else ""
            raise UserError(f"port {port} ({what}) is already in use on {HOST}{hint}")
    ray = Path(sys.executable).parent / "ray"
    head = RayHead(pid=0, work_dir=str(work_dir), dashboard_url=f"http://{HOST}:{dashboard_port}")
    cmd = [str(ray), "start", "--head", "--block", f"--node-ip-address={HOST}", f"--port={gcs_port}",
           "--include-dashboard=true", f"--dashboard-host={HOST}", f"--dashboard-port={dashboard_port}",
           f"--num-cpus={os.cpu_count() or 2}", "--num-gpus=0", f"--temp-dir={work_dir / 'ray'}",
           "--object-store-memory=500000000", "--disable-usage-stats"]
    with open(head.log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env={**stack_env(work_dir), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    head.pid = proc.pid
    state_file(work_dir).write_text(json.dumps(asdict(head)) + "\n")
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_head(head)
            raise UserError(f"ray start exited with {proc.returncode}:\n{tail(head.log_path)}")
        try:
            http("GET", f"{head.dashboard_url}/api/serve/applications/?api_type=declarative", timeout=5)
            return head
        except UserError:
            time.sleep(1)
    stop_head(head)
    raise UserError(f"the Ray dashboard did not answer within {start_timeout:.0f}s "
                    f"(KUBERAY_LLM_HEAD_START_TIMEOUT):\n{tail(head.log_path)}")


def load_head(work_dir: Path) -> RayHead | None:
    try:
        return RayHead(**json.loads(state_file(work_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def tree(pid: int) -> list:
    """The process and all its descendants (psutil.Process objects) that are alive now."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_head(head: RayHead) -> list[int]:
    """Shut Serve down, stop the head by its process group, and return the pids still alive (none, normally)."""
    import psutil

    stop_timeout = settings.stop_timeout()
    if head.pid and psutil.pid_exists(head.pid):
        try:
            http("DELETE", f"{head.dashboard_url}/api/serve/applications/", timeout=stop_timeout)
        except UserError:
            pass  # the head is going away regardless; this only lets Serve drain first
    procs = tree(head.pid) if head.pid else []
    if head.pid:
        try:
            os.killpg(head.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    # Serve has drained (or the head did not answer): what is left holds nothing worth a graceful exit. Ray 2.60's
    # raylet and GCS take about 30 s to leave after SIGTERM (measured on 2 cores: 35 s of a 107 s `local` run).
    _, alive = psutil.wait_procs(procs, timeout=min(STOP_GRACE_S, stop_timeout))
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=10)
    state_file(Path(head.work_dir)).unlink(missing_ok=True)
    return [p.pid for p in alive]


def peak_tracker(pid: int):
    """A function that samples the memory (PSS, so shared pages count once) of the head's process tree."""
    import psutil

    peak = {"bytes": 0}

    def sample() -> int:
        total = 0
        for proc in tree(pid):
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        peak["bytes"] = max(peak["bytes"], total)
        return peak["bytes"]

    return sample


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"
