"""What ray-auth turns on, on a real Ray head of the pinned Ray: with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (the
variables KubeRay v1.6.2 sets from authOptions, controllers/ray/common/pod.go SetContainerTokenAuthEnvVars) the
dashboard refuses the serve config API without the token (401) and with a wrong one (403), answers the
`x-ray-authorization: Bearer <token>` header the operator sends (utils/dashboardclient/dashboard_httpclient.go
setAuthHeader), and leaves the health checks KubeRay's probes call open. The head runs on free loopback ports in
its own session and is stopped by its process group, never with `ray stop`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "a-token-of-32-characters-or-more-for-this-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"x-ray-authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""  # not listening yet


@pytest.fixture(scope="module")
def urls():
    from kuberay_llm.local.ray_head import RayHead, stop_head

    import shutil
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp(prefix="rauth-", dir="/tmp"))  # Ray's unix sockets allow 107-byte paths
    ports = {name: free_port() for name in ("gcs", "dashboard", "agent_http", "agent_grpc", "metrics", "client",
                                            "runtime_env", "node_manager", "object_manager")}
    low = free_port()
    cmd = [str(os.path.join(os.path.dirname(sys.executable), "ray")), "start", "--head", "--block",
           "--node-ip-address=127.0.0.1", f"--port={ports['gcs']}", "--include-dashboard=true",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={ports['dashboard']}",
           f"--dashboard-agent-listen-port={ports['agent_http']}", f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
           f"--metrics-export-port={ports['metrics']}", f"--ray-client-server-port={ports['client']}",
           f"--runtime-env-agent-port={ports['runtime_env']}", f"--node-manager-port={ports['node_manager']}",
           f"--object-manager-port={ports['object_manager']}", f"--min-worker-port={low}",
           f"--max-worker-port={low + 50}", "--num-cpus=1", "--num-gpus=0", f"--temp-dir={work / 'ray'}",
           "--object-store-memory=100000000", "--disable-usage-stats"]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0",
           "HOME": str(work)}
    with open(work / "ray-start.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    head = RayHead(pid=proc.pid, work_dir=str(work), dashboard_url=f"http://127.0.0.1:{ports['dashboard']}")
    deadline = time.monotonic() + 180
    try:
        while get(f"{head.dashboard_url}/api/gcs_healthz")[0] != 200:  # the dashboard's start-up: nothing to watch
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{(work / 'ray-start.log').read_text()[-3000:]}",
                            pytrace=False)
            time.sleep(1)
        yield {"dashboard": head.dashboard_url, "agent": f"http://127.0.0.1:{ports['agent_http']}"}
    finally:
        stop_head(head)
        shutil.rmtree(work, ignore_errors=True)


def test_the_serve_api_refuses_a_caller_without_the_token(urls):
    assert get(f"{urls['dashboard']}/api/serve/applications/") == (401, "Unauthorized: Missing authentication token")


def test_the_serve_api_refuses_a_wrong_token(urls):
    assert get(f"{urls['dashboard']}/api/serve/applications/", token="not-the-token") == \
        (403, "Forbidden: Invalid authentication token")


def test_the_operators_header_gets_through(urls):
    status, _ = get(f"{urls['dashboard']}/api/serve/applications/?api_type=declarative", token=TOKEN)
    assert status == 200


def test_the_health_checks_kuberays_probes_call_stay_open(urls):
    """KubeRay's head probe: the agent's api/local_raylet_healthz and the dashboard's api/gcs_healthz
    (utils/constant.go RayAgentRayletHealthPath, RayDashboardGCSHealthPath), without a token."""
    assert get(f"{urls['dashboard']}/api/gcs_healthz")[0] == 200
    assert get(f"{urls['agent']}/api/local_raylet_healthz")[0] == 200
