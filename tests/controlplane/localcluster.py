"""A real, throw-away Kubernetes control plane on loopback: etcd + kube-apiserver from ./bin (`make
controlplane`), the KubeRay CRDs of the pinned operator, and optionally the KubeRay operator itself running
out-of-cluster. No kubelet, scheduler or controller-manager: pods stay Pending unless a test writes their
status, which is exactly what the harness's verdicts are tested against.

Used by the `controlplane` pytest fixtures and by `make bench-harness`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import ssl
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

ADMIN_TOKEN = "admin-token-for-the-local-control-plane"
START_TIMEOUT_S = float(os.environ.get("KUBERAY_LLM_CONTROLPLANE_START_TIMEOUT", "60"))


def binary(name: str, version_key: str) -> Path:
    """The pinned binary from ./bin; one lookup for this control plane and `kuberay-llm cluster`."""
    from kuberay_llm.cluster import controlplane
    from kuberay_llm.errors import UserError

    try:
        return controlplane.binary(name)
    except (UserError, KeyError) as err:
        raise RuntimeError(str(err) if isinstance(err, UserError) else f"Makefile: no {version_key} pin") from None


def etcd_binary() -> Path:
    return binary("etcd", "ETCD_VERSION")


def kuberay_crd_dir() -> Path:
    """config/crd/bases of the pinned KubeRay module in the Go module cache (never copied into the repo)."""
    from kuberay_llm.cluster import controlplane
    from kuberay_llm.errors import UserError

    try:
        return controlplane.module_dir("github.com/ray-project/kuberay/ray-operator", "KUBERAY_VERSION") / \
            "config/crd/bases"
    except UserError as err:
        raise RuntimeError(str(err)) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig_text(server: str, token: str, ca_file: Path, user: str = "admin") -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "local",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user, "namespace": "default"}}],
    })


class LocalControlPlane:
    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kuberay-llm-cp-"))
        self.etcd_port, self.etcd_peer_port, self.api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.tokens = {ADMIN_TOKEN: ("admin", "system:masters")}
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.operator: subprocess.Popen | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> LocalControlPlane:
        self._write_credentials()
        self.start_etcd()
        self.start_apiserver()
        self.kubeconfig.write_text(kubeconfig_text(self.server, ADMIN_TOKEN, self.ca_file))
        self.install_crds()
        return self

    def _write_credentials(self) -> None:
        (self.workdir / "certs").mkdir(parents=True, exist_ok=True)
        self.sa_key = self.workdir / "sa.key"
        self.sa_pub = self.workdir / "sa.pub"
        subprocess.run(["openssl", "genrsa", "-out", self.sa_key, "2048"], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub],
                       check=True, capture_output=True, timeout=60)
        self._write_tokens()

    def _write_tokens(self) -> None:
        lines = [f'{token},{user},{user},"{groups}"' for token, (user, groups) in self.tokens.items()]
        (self.workdir / "tokens.csv").write_text("\n".join(lines) + "\n")

    def add_token_user(self, user: str, groups: str = "") -> tuple[str, Path]:
        """A static-token user (needs an API server restart to take effect); returns (token, kubeconfig)."""
        token = f"token-of-{user}"
        self.tokens[token] = (user, groups)
        self._write_tokens()
        path = self.workdir / f"kubeconfig-{user}"
        path.write_text(kubeconfig_text(self.server, token, self.ca_file, user=user))
        return token, path

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = self._spawn("etcd", [
            str(etcd_binary()),
            "--data-dir", str(self.workdir / "etcd"), "--name", "default",
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--unsafe-no-fsync", "--log-level", "error"])
        self._wait_until(lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), "etcd", self.etcd)

    def start_apiserver(self) -> None:
        self.apiserver = self._spawn("kube-apiserver", [
            str(binary("kube-apiserver", "KUBERNETES_VERSION")),
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.api_port), "--cert-dir", str(self.workdir / "certs"),
            "--token-auth-file", str(self.workdir / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--allow-privileged=true",  # as on GKE: the A3 tcpx-daemon sidecar is privileged
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(self.sa_pub),
            "--service-account-signing-key-file", str(self.sa_key),
            "--service-cluster-ip-range", "10.96.0.0/16",
            # no controller-manager creates the `default` ServiceAccount of a namespace
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--v", "0"])
        self._wait_until(self._apiserver_ready, "kube-apiserver", self.apiserver)

    def stop_apiserver(self) -> None:
        self._stop(self.apiserver)
        self.apiserver = None

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def start_operator(self, namespace: str | None = None) -> subprocess.Popen:
        """The pinned KubeRay operator, out-of-cluster against this API server (as the admin)."""
        args = [str(binary("ray-operator", "KUBERAY_VERSION")), "--metrics-addr", "0",
                "--health-probe-bind-address", "0", "--enable-leader-election=false"]
        if namespace:
            args += ["--watch-namespace", namespace]
        self.operator = self._spawn("ray-operator", args, env={"KUBECONFIG": str(self.kubeconfig)})
        return self.operator

    def stop_operator(self) -> None:
        self._stop(self.operator)
        self.operator = None

    def stop(self) -> None:
        for proc in (self.operator, self.apiserver, self.etcd):
            self._stop(proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)

    @staticmethod
    def _stop(proc: subprocess.Popen | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait_until(self, check, what: str, proc: subprocess.Popen) -> None:
        # start-up wait of a local process: there is nothing to watch before its port answers
        deadline = time.monotonic() + START_TIMEOUT_S
        while not check():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{self.log_tail(what)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:.0f}s:\n{self.log_tail(what)}")
            time.sleep(0.1)

    @staticmethod
    def _http_ok(url: str, token: str | None = None) -> bool:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        context = ssl._create_unverified_context()  # readiness probe only; the kubeconfig verifies the CA
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _apiserver_ready(self) -> bool:
        return self._http_ok(f"{self.server}/readyz", ADMIN_TOKEN)

    def kube(self, namespace: str = "default", kubeconfig: Path | None = None):
        from kuberay_llm.harness.kube import Kube

        old = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        try:
            return Kube.connect(namespace)
        finally:
            if old is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old

    def install_crds(self) -> None:
        import yaml

        kube = self.kube()
        names = []
        for path in sorted(kuberay_crd_dir().glob("*.yaml")):
            crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            names.append(crd["metadata"]["name"])
            kube.request("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                         query=[("fieldManager", "kuberay-llm-tests"), ("force", "true")], body=crd,
                         content_type="application/apply-patch+yaml", timeout=60)
        deadline = time.monotonic() + START_TIMEOUT_S
        for name in names:
            while True:
                crd = kube.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established after {START_TIMEOUT_S:.0f}s")
                time.sleep(0.1)
        # discovery of ray.io/v1 lags Established by a moment
        while kube.get("/apis/ray.io/v1") is None or not any(
                r["name"] == "rayservices" for r in kube.get("/apis/ray.io/v1").get("resources", [])):
            if time.monotonic() > deadline:
                raise RuntimeError("ray.io/v1 not served after the CRDs were established")
            time.sleep(0.1)


if __name__ == "__main__":  # `python tests/controlplane/localcluster.py`: a control plane to poke at by hand
    plane = LocalControlPlane().start()
    print(f"export KUBECONFIG={plane.kubeconfig}  # Ctrl-C stops it", flush=True)
    try:
        signal.pause()
    finally:
        plane.stop()
