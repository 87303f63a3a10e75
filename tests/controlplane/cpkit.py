"""Helpers of the controlplane tests: run the real CLI against the local API server, write RayService and
Pod status the way KubeRay and the kubelet would (through the status subresource)."""

from __future__ import annotations

import datetime
import os
import queue
import subprocess
import threading
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "kuberay_llm.cli"]

# Bounds that tell "at once" from "after a grace period or timeout" are multiplied by this factor on a slow
# or loaded machine (KUBERAY_LLM_TEST_SLOWDOWN=3); the measured figures themselves are `make bench-harness`'s.
SLOWDOWN = float(os.environ.get("KUBERAY_LLM_TEST_SLOWDOWN", "1"))


def within(seconds: float) -> float:
    """A wall-clock bound of a test, scaled for slow machines."""
    return seconds * SLOWDOWN


# Short grace periods so the failure tests take seconds; each test can override.
FAST_ENV = {
    "KUBERAY_LLM_UNSCHEDULABLE_GRACE": "2s",
    "KUBERAY_LLM_UNHEALTHY_GRACE": "2s",
    "KUBERAY_LLM_IMAGE_PULL_GRACE": "2s",
    "KUBERAY_LLM_RECONNECT_BACKOFF_MAX": "0.5s",
}


def cli_env(kubeconfig: Path, **extra: str) -> dict:
    return {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO / "scripts"), **FAST_ENV, **extra}


def run_cli(args: list[str], kubeconfig: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=cli_env(kubeconfig, **env), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=REPO)


def start_cli(args: list[str], kubeconfig: Path, **env: str) -> subprocess.Popen:
    """The CLI in the background; its stderr lines are collected by a reader thread (`proc.stderr_lines`)."""
    proc = subprocess.Popen([*CLI, *args], env=cli_env(kubeconfig, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    proc.stderr_lines = queue.Queue()
    proc.stderr_seen = []

    def read():
        for line in proc.stderr:
            proc.stderr_lines.put(line)
        proc.stderr_lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return proc


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> list[str]:
    """Read the process's stderr until a line contains `needle` (the wait's progress log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = proc.stderr_lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            proc.stderr_lines.put(None)
            break
        proc.stderr_seen.append(line)
        if needle in line:
            return proc.stderr_seen
    raise AssertionError(f"no line with {needle!r} in {timeout}s; got:\n{''.join(proc.stderr_seen)}")


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """Exit code, stdout and the whole stderr of a `start_cli` process."""
    out = proc.stdout.read() if proc.wait(timeout=timeout) is not None else ""
    while True:
        line = proc.stderr_lines.get(timeout=5)
        if line is None:
            break
        proc.stderr_seen.append(line)
    return proc.returncode, out, "".join(proc.stderr_seen)


RAYSERVICE_PATH = "/apis/ray.io/v1/namespaces/{ns}/rayservices"


def minimal_rayservice(name: str, annotations: dict | None = None) -> dict:
    """A small valid RayService (the operator is not running in the verdict tests)."""
    container = {"name": "ray-head", "image": RAY_IMAGE}
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "serveConfigV2": "applications:\n- name: llm_app\n  import_path: ray.serve.llm:build_openai_app\n"
                             "  args:\n    llm_configs:\n    - model_loading_config:\n        model_id: m\n"
                             "        model_source: org/m\n",
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [container]}}},
                "workerGroupSpecs": [{"groupName": "gpu-group", "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                                      "rayStartParams": {}, "template": {"spec": {"containers": [
                                          {**container, "name": "ray-worker"}]}}}],
            },
        },
    }


def create_rayservice(kube, name: str, **kwargs) -> dict:
    return kube.request("POST", RAYSERVICE_PATH.format(ns=kube.namespace), body=minimal_rayservice(name, **kwargs))


def write_status(kube, name: str, status: dict, *, generation: int | None = None) -> dict:
    """Replace the RayService's status as KubeRay would (status subresource)."""
    path = f"{RAYSERVICE_PATH.format(ns=kube.namespace)}/{name}"
    current = kube.request("GET", path)
    status = {"observedGeneration": current["metadata"]["generation"] if generation is None else generation, **status}
    current["status"] = status
    return kube.request("PUT", f"{path}/status", body=current)


def ready(status: str = "True", reason: str = "NonZeroServeEndpoints", message: str = "") -> dict:
    return {"type": "Ready", "status": status, "reason": reason, "message": message or reason,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def serving_status(cluster: str, app_state: str = "RUNNING", deployments: dict | None = None,
                   message: str = "", ready_condition: dict | None = None) -> dict:
    deployments = deployments if deployments is not None else {"LLMServer:m": "HEALTHY", "OpenAiIngress": "HEALTHY"}
    return {
        "conditions": [ready_condition or ready()],
        "activeServiceStatus": {
            "rayClusterName": cluster,
            "applicationStatuses": {"llm_app": {
                "status": app_state, "message": message,
                "serveDeploymentStatuses": {d: {"status": s, "message": ""} for d, s in deployments.items()}}},
        },
    }


RAY_IMAGE = "rayproject/ray-llm:2.60.0-py312-cu130"


def create_pod(kube, cluster: str, name: str, group: str = "gpu-group", node_type: str = "worker",
               resources: dict | None = None, image: str = RAY_IMAGE) -> dict:
    container = {"name": "ray-worker" if node_type == "worker" else "ray-head", "image": image}
    if resources:
        container["resources"] = {"requests": resources, "limits": resources}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"ray.io/cluster": cluster, "ray.io/group": group,
                                                 "ray.io/node-type": node_type}},
           "spec": {"containers": [container]}}
    return kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/pods", body=pod)


def create_pod_event(kube, pod: str, reason: str, message: str, type_: str = "Warning") -> dict:
    """An event on a pod as the kubelet records it (source component kubelet)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/events", body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{pod}.{reason.lower()}.{time.time_ns()}"},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": kube.namespace, "apiVersion": "v1"},
        "reason": reason, "message": message, "type": type_, "count": 1, "source": {"component": "kubelet"},
        "firstTimestamp": now, "lastTimestamp": now})


def write_pod_status(kube, name: str, status: dict) -> dict:
    path = f"/api/v1/namespaces/{kube.namespace}/pods/{name}"
    pod = kube.request("GET", path)
    pod["status"] = status
    return kube.request("PUT", f"{path}/status", body=pod)


def unschedulable(message: str) -> dict:
    return {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}


def container_waiting(container: str, reason: str, message: str = "", last_terminated: dict | None = None,
                      restarts: int = 0, image: str = RAY_IMAGE) -> dict:
    status = {"name": container, "image": image, "imageID": "", "ready": False,
              "restartCount": restarts, "state": {"waiting": {"reason": reason, "message": message}}}
    if last_terminated:
        status["lastState"] = {"terminated": {"startedAt": "2026-01-01T00:00:00Z",
                                              "finishedAt": "2026-01-01T00:00:01Z", **last_terminated}}
    return {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "containerStatuses": [status]}
