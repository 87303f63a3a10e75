"""One container of the local kubelet: its environment resolved as a kubelet resolves it, and its process.

The process is `ip netns exec <pod netns> unshare --mount --uts --pid --fork --mount-proc <python> -m
kuberay_llm.cluster.podinit SPEC` (podinit.py sets up the container's view and execs the command). Its
output goes to a CRI-format log file, the format kwok's kubelet API serves to `kubectl logs`.

Differences from a real kubelet, each because nothing else can stand in here: the image is not pulled
(Ray and vLLM come from ./.venv: PATH starts with its bin/), an empty `command` cannot fall back to the
image's entrypoint (an error says so), resource limits are not enforced, service-link variables are not set,
and KUBERNETES_SERVICE_HOST names the API server's own address (there is no kube-proxy for 10.96.0.1).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes.utils.quantity import parse_quantity

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(Exception):
    """The container cannot be created as specified (kubelet: CreateContainerConfigError)."""


def venv_bin() -> str:
    return str(Path(sys.executable).parent)


# -- environment ---------------------------------------------------------------------------------------

_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ is a literal $, the rest stays."""
    def sub(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _REF.sub(sub, text)


def field_value(pod: dict, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
              "spec.nodeName": spec.get("nodeName", ""), "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.hostIP": status.get("hostIP", ""), "status.podIP": status.get("podIP", ""),
              "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
              "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or [])}
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ConfigError(f"fieldRef {path!r} is not supported by the local kubelet")


def resource_value(pod: dict, container: dict, ref: dict, node_allocatable: dict) -> str:
    name = ref.get("containerName") or container["name"]
    target = next((c for c in pod["spec"]["containers"] if c["name"] == name), None)
    if target is None:
        raise ConfigError(f"resourceFieldRef: no container {name!r}")
    kind, _, resource = ref["resource"].partition(".")
    resources = target.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    if value is None:
        value = node_allocatable.get(resource, "0")  # the kubelet's default for an unset limit
    quantity = parse_quantity(str(value)) / parse_quantity(str(ref.get("divisor") or "1"))
    return str(math.ceil(quantity))


def resolve_env(pod: dict, container: dict, lookup, node_allocatable: dict, base: dict[str, str]) -> dict[str, str]:
    """The container's environment. `lookup(kind, name)` returns a ConfigMap/Secret's data (decoded) or None."""
    env = dict(base)

    def source(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        data = lookup(kind, name)
        if data is None and not optional:
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return data

    for item in container.get("envFrom") or []:
        ref_kind = "ConfigMap" if "configMapRef" in item else "Secret"
        ref = item.get("configMapRef") or item.get("secretRef") or {}
        data = source(ref_kind, ref["name"], ref.get("optional", False)) or {}
        for key, value in data.items():
            env[item.get("prefix", "") + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            env[name] = field_value(pod, ref["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in ref:
            env[name] = resource_value(pod, container, ref["resourceFieldRef"], node_allocatable)
        else:
            kind = "ConfigMap" if "configMapKeyRef" in ref else "Secret"
            key_ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef")
            data = source(kind, key_ref["name"], key_ref.get("optional", False))
            if data is None:
                continue
            if key_ref["key"] not in data:
                if key_ref.get("optional"):
                    continue
                raise ConfigError(f"couldn't find key {key_ref['key']} in {kind} {pod['metadata']['namespace']}/"
                                  f"{key_ref['name']}")
            env[name] = data[key_ref["key"]]
    return env


def argv_of(container: dict, env: dict[str, str]) -> list[str]:
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if not command:
        raise ConfigError(f"container {container['name']} has no command: the local kubelet runs no image, so it "
                          f"cannot fall back to the entrypoint of {container.get('image')}")
    return command + args


# -- the process ---------------------------------------------------------------------------------------

def cri_timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerProcess:
    """A started container: `wait()` returns its exit code; `init_pid` is its PID 1 as seen from this machine."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str]
    started_at: str = field(default_factory=now_rfc3339)
    init_pid: int | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def find_init(self, timeout: float = 10) -> int | None:
        """The unshare'd child: PID 1 of the container's PID namespace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                self.init_pid = int(children[0])
                return self.init_pid
            time.sleep(0.02)
        return None

    def wait(self) -> int:
        code = self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as container runtimes report

    def signal(self, sig: int) -> None:
        """SIGKILL always lands; other signals reach the command only if it handles them (PID 1 rules)."""
        for pid in (self.init_pid, self.proc.pid):
            if pid:
                try:
                    os.kill(pid, sig)
                    return
                except ProcessLookupError:
                    continue

    def stop(self, grace_s: float) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        return self.wait()


def start(name: str, netns: str, spec: dict, spec_path: Path, log_path: Path) -> ContainerProcess:
    spec_path.write_text(json.dumps(spec))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
           "--propagation", "private", sys.executable, "-m", "kuberay_llm.cluster.podinit", str(spec_path)]
    env = {"PATH": SYSTEM_PATH}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    container = ContainerProcess(name=name, proc=proc, log_path=log_path, env=spec["env"])
    lock = threading.Lock()
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the last reader thread
    open_streams = [2]

    def pump(stream, stream_name: bytes) -> None:
        for line in iter(stream.readline, b""):
            with lock:
                log.write(cri_timestamp().encode() + b" " + stream_name + b" F " + line.rstrip(b"\n") + b"\n")
        stream.close()
        with lock:
            open_streams[0] -= 1
            if not open_streams[0]:
                log.close()

    for stream, stream_name in ((proc.stdout, b"stdout"), (proc.stderr, b"stderr")):
        thread = threading.Thread(target=pump, args=(stream, stream_name), daemon=True, name=f"log-{name}")
        thread.start()
        container._threads.append(thread)
    container.find_init()
    return container
