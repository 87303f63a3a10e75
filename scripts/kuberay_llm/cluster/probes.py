"""Readiness and liveness probes of the local kubelet, run the way a kubelet runs them: `exec` inside the
container's namespaces (nsenter into its PID 1), `httpGet` and `tcpSocket` from this machine to the pod IP.
Defaults and thresholds are Kubernetes' (core/v1 Probe)."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Result:
    ok: bool
    message: str = ""


def settings(probe: dict) -> dict:
    return {"initialDelaySeconds": probe.get("initialDelaySeconds", 0), "periodSeconds": probe.get("periodSeconds", 10),
            "timeoutSeconds": probe.get("timeoutSeconds", 1), "successThreshold": probe.get("successThreshold", 1),
            "failureThreshold": probe.get("failureThreshold", 3)}


def _port(value, container: dict) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"no container port named {value!r}")


def run(probe: dict, container: dict, pod_ip: str, init_pid: int | None, env: dict[str, str]) -> Result:
    timeout = settings(probe)["timeoutSeconds"]
    try:
        if "exec" in probe:
            if init_pid is None:
                return Result(False, "container not running")
            proc = subprocess.run(["nsenter", "--target", str(init_pid), "--net", "--mount", "--uts", "--pid", "--",
                                   *probe["exec"]["command"]], env=env, capture_output=True, timeout=timeout,
                                  check=False)
            output = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            return Result(proc.returncode == 0, output or f"command exited with {proc.returncode}")
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or pod_ip
            url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{_port(get['port'], container)}{get.get('path', '/')}"
            request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in get.get("httpHeaders") or []})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return Result(200 <= response.status < 400, f"HTTP probe returned {response.status}")
            except urllib.error.HTTPError as exc:
                return Result(False, f"HTTP probe failed with statuscode: {exc.code}")
        if "tcpSocket" in probe:
            with socket.create_connection((pod_ip, _port(probe["tcpSocket"]["port"], container)), timeout=timeout):
                return Result(True)
    except subprocess.TimeoutExpired:
        return Result(False, f"command timed out after {timeout}s")
    except (OSError, ValueError) as exc:
        return Result(False, str(getattr(exc, "reason", exc)))
    return Result(False, "probe type not supported by the local kubelet (exec, httpGet, tcpSocket are)")
