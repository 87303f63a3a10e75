"""Start and stop the local cluster: every component a real process from ./bin, every one stopped by PID.

    etcd, kube-apiserver, kube-controller-manager, kube-scheduler   (Kubernetes, `make controlplane`)
    kwok                 fake nodes (data/local-cluster.yaml), simulated pods, the kubelet API
    local kubelet        runs the pods of the `local` node for real (kubelet.py)
    KubeRay operator     the pinned ray-operator, out of cluster, --use-kubernetes-proxy

Why our own launcher and not `kwokctl create cluster --runtime binary` (which also runs local binaries and
is up in ~3 s): kwokctl binds every component to 0.0.0.0, needs kubectl on PATH (else downloads it), leaves
nodes without an InternalIP, and would still need the flags below passed through --extra-args; this module
is the few lines of flags that kwokctl would otherwise generate, plus the pod network, which kwokctl has not.

The API server listens on the pod network's host address, port 443, only: pods reach it there as
`kubernetes.default` (the Ray autoscaler's fixed URL, https://kubernetes.default:443) and this machine's
clients through the kubeconfig. The operator reaches Ray's dashboard and Serve through the API server's
service and pod proxy (no cluster DNS here). Nothing listens on another interface.

Needs root (network.py says why). State, logs and the kubeconfig live in one directory (.work/cluster for
`kuberay-llm cluster up`); `state.json` there records every PID, so `down` stops exactly what `up` started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kuberay_llm import settings, toolchain
from kuberay_llm.cluster import gpus, kwok_config, network
from kuberay_llm.errors import UserError

NODES_FILE = Path(__file__).resolve().parents[1] / "data" / "local-cluster.yaml"
STOP_TIMEOUT_S = 20.0
API_PORT = 443
NODE_IP = "127.0.0.1"  # kwok's kubelet API: the API server reaches it on loopback
SERVICE_CIDR = "10.96.0.0/16"
NODE_LEASE_S = 40
# Every node in one zone, as cloud nodes carry it: components/one-zone keeps a tier's workers in one zone.
ZONE_LABELS = {"topology.kubernetes.io/region": "local", "topology.kubernetes.io/zone": "local-a"}
# Components in start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubelet",
              "ray-operator")


def default_dir() -> Path:
    return toolchain.work_dir() / "cluster"


def binary(name: str) -> Path:
    pins = toolchain.pins()
    if name == "etcd":
        version = next(line.split()[-1] for line in (toolchain.REPO_ROOT / "hack/tools/etcd/go.mod").read_text()
                       .splitlines() if line.startswith("require go.etcd.io/etcd/server/v3 "))
    else:
        version = pins[{"ray-operator": "KUBERAY_VERSION", "kwok": "KWOK_VERSION"}.get(name, "KUBERNETES_VERSION")]
    path = toolchain.bin_dir() / f"{name}-{version}"
    if not path.exists():
        raise UserError(f"{path} is missing: run `make controlplane` (builds etcd, kube-apiserver, "
                        "kube-controller-manager, kube-scheduler, kwok and the KubeRay operator into ./bin)")
    return path


# The CRDs `up` installs: module, its version's Makefile pin, the folders read.
CRD_MODULES = (("github.com/ray-project/kuberay/ray-operator", "KUBERAY_VERSION"), ("sigs.k8s.io/kwok", "KWOK_VERSION"))
CRD_SUBDIRS = {"github.com/ray-project/kuberay/ray-operator": ("config/crd/bases",),
               "sigs.k8s.io/kwok": ("kustomize/crd/bases",)}


def escape_module(path: str) -> str:
    """The module cache's case encoding (golang.org/x/mod/module.EscapePath): 'A' -> '!a'."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def module_dir(module: str, version_key: str) -> Path:
    """A pinned Go module's directory in the module cache (CRDs are read from there, never copied).

    Where `go` is not installed (a GPU node given a carried module cache, bench/gpu/carry.py), the directory is
    looked up in $GOMODCACHE by the cache's own layout instead."""
    version = toolchain.pins()[version_key]
    if shutil.which("go") is None:
        cache = os.environ.get("GOMODCACHE")
        path = Path(cache or "~/go/pkg/mod").expanduser() / f"{escape_module(module)}@{version}"
        if path.is_dir():
            return path
        raise UserError(f"{module}@{version} is not in the Go module cache ({path}) and `go` is not installed: "
                        "install Go, or set GOMODCACHE to a cache that holds it (bench/gpu/carry.py packs one)")
    proc = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                          timeout=300, check=False, cwd=tempfile.gettempdir())
    info = json.loads(proc.stdout or "{}")
    if not info.get("Dir"):
        raise UserError(f"go mod download {module}@{version} failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_objects() -> list[dict]:
    """The Node objects (and their capacity) of data/local-cluster.yaml, one per count."""
    pools = yaml.safe_load(NODES_FILE.read_text())["nodes"]
    nodes = []
    for pool in pools:
        for i in range(pool.get("count", 1)):
            name = pool["name"] if pool.get("count", 1) == 1 else f"{pool['name']}-{i}"
            nodes.append({"name": name, "runs": pool["runs"], "capacity": pool["capacity"], "ip": NODE_IP,
                          "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                     "kubernetes.io/arch": "amd64", "kuberay-llm.local/runs": pool["runs"],
                                     **ZONE_LABELS, **pool.get("labels", {})},
                          "taints": pool.get("taints", [])})
    if settings.gpus() != "none":  # this machine's GPUs as a node of their own
        found = gpus.discover()
        if found:
            nodes.append(gpus.gpu_node(found, ZONE_LABELS, NODE_IP))
    return nodes


def alive(pid: int, binary_name: str) -> bool:
    """`pid` is running and is `binary_name` (a PID reused by another program is not ours to stop)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(binary_name.encode() in part for part in cmdline[:3])


def stop_pid(pid: int, binary_name: str, timeout: float = STOP_TIMEOUT_S) -> None:
    if not alive(pid, binary_name):
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # each component runs in its own session: its group is its own
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid, binary_name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid, binary_name):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Cluster:
    def __init__(self, directory: Path | None = None):
        self.dir = Path(directory or default_dir()).resolve()
        self.state_file = self.dir / "state.json"
        self.kubeconfig = self.dir / "kubeconfig"
        self.state: dict = {}

    # -- state ----------------------------------------------------------------------------------------

    def load(self) -> dict | None:
        try:
            self.state = json.loads(self.state_file.read_text())
            return self.state
        except (OSError, ValueError):
            return None

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        tmp.replace(self.state_file)

    def running(self) -> bool:
        if not self.load():
            return False
        pids = self.state.get("pids", {})
        return all(name in pids and alive(pids[name]["pid"], pids[name]["binary"]) for name in COMPONENTS)

    @property
    def server(self) -> str:
        return f"https://{self.state['host_ip']}:{API_PORT}"

    # -- up -------------------------------------------------------------------------------------------

    def up(self, out=sys.stdout) -> Cluster:
        for read in (settings.cluster_start_timeout, settings.gpus, settings.cluster_pod_cidr):
            read()  # a bad value fails now, before any component starts
        network.require_root("the local cluster")
        if self.running():
            print(f"local cluster already running (API server {self.server})", file=out)
            return self
        if self.load():
            self.down(out=open(os.devnull, "w"))  # a stale or half-started one: clean it first
        binaries = {name: binary(name) for name in COMPONENTS if name != "kubelet"}
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clean(logs=True)  # a fresh cluster: no etcd data, certificates or pods of an earlier one
        ident = secrets.token_hex(3)
        pod_cidr = network.pick_pod_cidr()
        real, simulated = list(pod_cidr.subnets(prefixlen_diff=1))  # kwok's pod IPs: upper half, no process
        self.state = {"id": ident, "bridge": f"krl{ident}", "netns_prefix": f"krl{ident}", "pod_cidr": str(real),
                      "kwok_cidr": str(simulated), "api_port": API_PORT, "nodes": node_objects(), "pids": {}}
        self.save()
        try:
            self.state["host_ip"] = network.create_bridge(self.state["bridge"], pod_cidr)
            network.add_unreachable(self.state["kwok_cidr"])
            self.save()
            self._credentials()
            self._start_etcd(binaries["etcd"])
            self._start_apiserver(binaries["kube-apiserver"])
            self._install_crds()
            self._start("kube-controller-manager", [
                str(binaries["kube-controller-manager"]), "--kubeconfig", str(self.kubeconfig),
                "--leader-elect=false", "--secure-port=0", "--controllers=*",
                "--root-ca-file", str(self.ca_file), "--service-account-private-key-file", str(self.dir / "sa.key"),
                "--use-service-account-credentials=false", "--v=1"])
            self._start("kube-scheduler", [str(binaries["kube-scheduler"]), "--kubeconfig", str(self.kubeconfig),
                                           "--leader-elect=false", "--secure-port=0", "--v=1"])
            self._start_kwok(binaries["kwok"])
            self._create_nodes()
            self._start("kubelet", [sys.executable, "-m", "kuberay_llm.cluster.kubelet", str(self.dir)],
                        binary_name="kuberay_llm.cluster.kubelet",
                        env={"PYTHONPATH": str(toolchain.REPO_ROOT / "scripts")})
            self._start("ray-operator", [str(binaries["ray-operator"]), "--metrics-addr", "0",
                                         "--health-probe-bind-address", "0", "--enable-leader-election=false",
                                         "--use-kubernetes-proxy"])
            self._wait_ready()
        except BaseException:
            self.down(out=open(os.devnull, "w"))
            raise
        self.state["up_seconds"] = round(time.monotonic() - started, 1)
        self.save()
        print(f"local cluster up in {self.state['up_seconds']:.0f}s: API server {self.server}, "
              f"{len(self.state['nodes'])} nodes, pod network {self.state['pod_cidr']} on bridge {self.state['bridge']}",
              file=out)
        return self

    @property
    def ca_file(self) -> Path:
        return self.dir / "certs" / "apiserver.crt"

    def _credentials(self) -> None:
        (self.dir / "certs").mkdir(parents=True, exist_ok=True)
        run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)  # noqa: E731
        run("openssl", "genrsa", "-out", str(self.dir / "sa.key"), "2048")
        run("openssl", "rsa", "-in", str(self.dir / "sa.key"), "-pubout", "-out", str(self.dir / "sa.pub"))
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", "/CN=kwok",
            "-addext", f"subjectAltName=IP:{NODE_IP}", "-keyout", str(self.dir / "kwok.key"),
            "-out", str(self.dir / "kwok.crt"))
        self.state["admin_token"] = secrets.token_hex(16)
        (self.dir / "tokens.csv").write_text(f'{self.state["admin_token"]},admin,admin,"system:masters"\n')
        self.save()

    def _start(self, name: str, args: list[str], env: dict | None = None, binary_name: str | None = None) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})},
                                start_new_session=True, cwd=self.dir)
        log.close()
        self.state["pids"][name] = {"pid": proc.pid, "binary": binary_name or Path(args[0]).name}
        self.save()

    def _wait(self, what: str, check, name: str | None = None) -> None:
        timeout = settings.cluster_start_timeout()
        deadline = time.monotonic() + timeout
        last = "not yet"
        while True:
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = f"{type(exc).__name__}: {exc}"
            if name and not alive(self.state["pids"][name]["pid"], self.state["pids"][name]["binary"]):
                raise UserError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise UserError(f"{what} not ready after {timeout:.0f}s (KUBERAY_LLM_CLUSTER_START_TIMEOUT); "
                                f"last check: {last[:500]}\n{self.log_tail(name) if name else ''}")
            time.sleep(0.2)

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _start_etcd(self, etcd: Path) -> None:
        client, peer = free_port(), free_port()
        self.state["etcd_port"] = client
        self._start("etcd", [str(etcd), "--data-dir", str(self.dir / "etcd"), "--name", "default",
                             "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                             "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--unsafe-no-fsync",
                             "--log-level", "error"])
        import urllib.request
        self._wait("etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2).status == 200,
                   "etcd")

    def _start_apiserver(self, apiserver: Path) -> None:
        host = self.state["host_ip"]
        self._start("kube-apiserver", [
            str(apiserver), "--etcd-servers", f"http://127.0.0.1:{self.state['etcd_port']}",
            "--bind-address", host, "--advertise-address", host, "--secure-port", str(API_PORT),
            "--cert-dir", str(self.dir / "certs"), "--token-auth-file", str(self.dir / "tokens.csv"),
            "--authorization-mode", "RBAC", "--allow-privileged=true",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(self.dir / "sa.pub"),
            "--service-account-signing-key-file", str(self.dir / "sa.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--kubelet-preferred-address-types", "InternalIP", "--enable-priority-and-fairness=false", "--v=0"])
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "kuberay-llm-local",
            "clusters": [{"name": "kuberay-llm-local",
                          "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "admin", "user": {"token": self.state["admin_token"]}}],
            "contexts": [{"name": "kuberay-llm-local",
                          "context": {"cluster": "kuberay-llm-local", "user": "admin", "namespace": "default"}}],
        }, indent=1) + "\n")
        self._wait("kube-apiserver", lambda: self.kube().text("/readyz", []) == "ok", "kube-apiserver")

    def kube(self, namespace: str = "default"):
        from kuberay_llm.harness.kube import Kube

        old = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(self.kubeconfig)
        try:
            return Kube.connect(namespace)
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old

    def _install_crds(self) -> None:
        kuberay = module_dir(*CRD_MODULES[0]) / CRD_SUBDIRS[CRD_MODULES[0][0]][0]
        kwok = module_dir(*CRD_MODULES[1]) / CRD_SUBDIRS[CRD_MODULES[1][0]][0]
        paths = sorted(kuberay.glob("*.yaml")) + [kwok / "kwok.x-k8s.io_logs.yaml", kwok / "kwok.x-k8s.io_portforwards.yaml"]
        kube = self.kube()
        names = []
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for path in paths:
            crd = yaml.load(path.read_text(), Loader=loader)
            names.append(crd["metadata"]["name"])
            kube.request("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{names[-1]}",
                         query=[("fieldManager", "kuberay-llm-cluster"), ("force", "true")], body=crd,
                         content_type="application/apply-patch+yaml", timeout=60)

        def established() -> bool:
            for name in names:
                crd = kube.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                if not any(c["type"] == "Established" and c["status"] == "True"
                           for c in (crd.get("status") or {}).get("conditions") or []):
                    return False
            return True

        self._wait("the KubeRay and kwok CRDs", established)

    def _start_kwok(self, kwok: Path) -> None:
        nodes = self.state["nodes"]
        config = self.dir / "kwok.yaml"
        config.write_text(kwok_config.config_text([n["name"] for n in nodes if n["runs"] != "ray"],
                                                  [n["name"] for n in nodes if n["runs"] == "ray"]))
        port = free_port()
        self.state["kwok_port"] = port
        self._start("kwok", [str(kwok), "--kubeconfig", str(self.kubeconfig), "--config", str(config),
                             "--manage-all-nodes=true", "--node-ip", NODE_IP, "--node-port", str(port),
                             "--server-address", f"{NODE_IP}:{port}", "--tls-cert-file", str(self.dir / "kwok.crt"),
                             "--tls-private-key-file", str(self.dir / "kwok.key"), "--cidr", self.state["kwok_cidr"],
                             "--node-lease-duration-seconds", str(NODE_LEASE_S), "--enable-crds=Logs,PortForward"])

    def _create_nodes(self) -> None:
        kube = self.kube()
        for node in self.state["nodes"]:  # with its capacity, as a kubelet registers its node: kwok copies it
            kube.request("POST", "/api/v1/nodes", body={
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node["name"], "labels": node["labels"],
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": node["taints"]},
                "status": {"capacity": node["capacity"], "allocatable": node["capacity"]}})

    def _wait_ready(self) -> None:
        kube = self.kube()

        def nodes_ready() -> bool:
            items = kube.request("GET", "/api/v1/nodes")["items"]
            return len(items) == len(self.state["nodes"]) and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions")
                    or []) for n in items)

        self._wait("kwok's nodes", nodes_ready, "kwok")
        # Pods need the namespace's default ServiceAccount (kcm) before they can be created.
        self._wait("the default ServiceAccount",
                   lambda: kube.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
                   "kube-controller-manager")
        for name in COMPONENTS:
            pid = self.state["pids"][name]
            if not alive(pid["pid"], pid["binary"]):
                raise UserError(f"{name} exited during start-up:\n{self.log_tail(name)}")

    # -- down -----------------------------------------------------------------------------------------

    def _clean(self, logs: bool) -> None:
        """Remove what `up` writes here (only those names: the directory may hold other files). The kubeconfig
        goes too, so a client cannot reach for the stopped cluster's address."""
        for name in ("etcd", "certs", "pods"):
            shutil.rmtree(self.dir / name, ignore_errors=True)
        for name in ("kubeconfig", "kwok.yaml", "kwok.crt", "kwok.key", "sa.key", "sa.pub", "tokens.csv"):
            (self.dir / name).unlink(missing_ok=True)
        if logs:
            for name in COMPONENTS:
                (self.dir / f"{name}.log").unlink(missing_ok=True)

    def down(self, out=sys.stdout) -> None:
        if not self.load():
            print(f"no local cluster in {self.dir}", file=out)
            return
        network.require_root("stopping the local cluster")
        pids = self.state.get("pids", {})
        for name in ("ray-operator", "kubelet"):
            if name in pids:
                stop_pid(pids[name]["pid"], pids[name]["binary"])
        prefix = self.state.get("netns_prefix")
        stopped_pods = 0
        if prefix:
            for netns in network.list_netns(prefix + "-"):
                for pid in network.netns_pids(netns):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                network.delete_pod_netns(netns)
                stopped_pods += 1
        for name in reversed(COMPONENTS):
            if name in pids and name not in ("ray-operator", "kubelet"):
                stop_pid(pids[name]["pid"], pids[name]["binary"])
        if self.state.get("bridge"):
            network.delete_bridge(self.state["bridge"])
        if self.state.get("kwok_cidr"):
            network.delete_unreachable(self.state["kwok_cidr"])
        left = [n for n, p in pids.items() if alive(p["pid"], p["binary"])]
        if left:
            raise UserError(f"still running after stop: {', '.join(left)} (see {self.state_file})")
        self._clean(logs=False)
        self.state_file.unlink(missing_ok=True)
        print(f"local cluster stopped: {len(pids)} components and {stopped_pods} pod sandboxes", file=out)
