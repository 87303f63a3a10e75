"""The real Argo CD on the local control plane (localcluster.py): the pinned multi-call `argocd` binary of
`make argocd` run out-of-cluster as repo-server, application-controller and applicationset-controller, the
way Argo CD's own Procfile runs them for development (ARGOCD_FAKE_IN_CLUSTER: the in-cluster destination
https://kubernetes.default.svc is the kubeconfig's API server), with miniredis as their Redis, syncing a Git
repository that `git daemon` serves on loopback.

Argo CD's CRDs and its ConfigMaps/Secret come from the pinned argo-cd/v3 module (manifests/), as an
install.yaml would create them; the project's argocd/argocd-cm.yaml is then applied server-side with its own
field manager, as the README tells users to.

Nothing leaves the machine: the repo-server's HTTPS proxy is a closed loopback port, so the KubeRay Helm
repository of argocd/kuberay-operator.yaml fails at once instead of being looked up.

Used by tests/controlplane/test_argocd_sync.py and `make argocd-local`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from localcluster import REPO_ROOT, LocalControlPlane, free_port, kubeconfig_text, ADMIN_TOKEN

from kuberay_llm import toolchain  # noqa: E402 - localcluster puts scripts/ on sys.path
from kuberay_llm.harness.kube import ApiError  # noqa: E402

NAMESPACE = "argocd"
# What the README tells users to apply with `kubectl apply --server-side --field-manager=kuberay-llm`.
ARGOCD_CM = REPO_ROOT / "argocd" / "argocd-cm.yaml"
# The URL every argocd/*.yaml has for this repository; a fork changes it, the tests substitute it.
COMMITTED_REPO_URL = "https://github.com/your-org/kuberay-llm.git"


def argocd_binary() -> Path:
    path = toolchain.bin_dir() / f"argocd-{toolchain.pins()['ARGOCD_VERSION']}"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make argocd` (builds Argo CD and its Redis into ./bin)")
    return path


def redis_binary() -> Path:
    found = sorted(toolchain.bin_dir().glob("redis-miniredis-*"))
    version = next((line.split()[1] for line in (REPO_ROOT / "hack/tools/argocd/go.mod").read_text().splitlines()
                    if line.strip().startswith("github.com/alicebob/miniredis/v2 ")), None)
    path = toolchain.bin_dir() / f"redis-miniredis-{version}"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make argocd` (found: {[p.name for p in found]})")
    return path


def argocd_module_dir() -> Path:
    """The pinned argo-cd/v3 module in the Go module cache (its manifests/ are never copied into the repo)."""
    version = toolchain.pins()["ARGOCD_VERSION"]
    proc = subprocess.run(["go", "mod", "download", "-json", f"github.com/argoproj/argo-cd/v3@{version}"],
                          capture_output=True, text=True, timeout=300, check=False, cwd=tempfile.gettempdir())
    info = json.loads(proc.stdout or "{}")
    if not info.get("Dir"):
        raise RuntimeError(f"go mod download of argo-cd/v3 failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"])


def load_yaml_docs(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]


def git(*args: str, cwd: Path, timeout: float = 60) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "kuberay-llm tests", "GIT_AUTHOR_EMAIL": "tests@kuberay-llm.invalid",
           "GIT_COMMITTER_NAME": "kuberay-llm tests", "GIT_COMMITTER_EMAIL": "tests@kuberay-llm.invalid"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


class GitServer:
    """`git daemon` on loopback serving one bare repository, plus a working clone to commit and push from.

    The repository starts as a snapshot of this checkout's files (tracked and untracked-but-not-ignored, as
    they are on disk: on a clean clone that is HEAD), in one commit."""

    def __init__(self, plane: LocalControlPlane, name: str = "kuberay-llm"):
        self.plane = plane
        self.root = plane.workdir / "git"
        self.bare = self.root / f"{name}.git"
        self.work = plane.workdir / "git-work"
        self.port = free_port()
        self.url = f"git://127.0.0.1:{self.port}/{name}.git"
        self.proc: subprocess.Popen | None = None

    def start(self, source: Path = REPO_ROOT) -> GitServer:
        self.work.mkdir(parents=True)
        files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=source).split("\0")
        for rel in filter(None, files):
            src = source / rel
            if src.is_file():  # a deleted but still tracked file is skipped
                dst = self.work / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        git("init", "-q", "-b", "main", cwd=self.work)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", "snapshot of the checkout", cwd=self.work)
        self.root.mkdir(parents=True)
        git("clone", "-q", "--bare", str(self.work), str(self.bare), cwd=self.root)
        git("remote", "add", "served", str(self.bare), cwd=self.work)
        self.proc = self.plane._spawn("git-daemon", [
            "git", "daemon", f"--base-path={self.root}", "--export-all", "--reuseaddr", "--informative-errors",
            "--listen=127.0.0.1", f"--port={self.port}", str(self.root)])
        self.plane._wait_until(lambda: self._answers(), "git-daemon", self.proc)
        return self

    def _answers(self) -> bool:
        try:
            git("ls-remote", self.url, cwd=self.root, timeout=5)
            return True
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def commit(self, message: str, edit) -> str:
        """Apply `edit(workdir)`, commit, push to the served repository; return the new commit SHA."""
        edit(self.work)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        git("push", "-q", "served", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def stop(self) -> None:
        LocalControlPlane._stop(self.proc)
        self.proc = None


def substitute_repo_url(work: Path, url: str) -> None:
    """Point argocd/*.yaml at `url` instead of the committed placeholder (what a fork does by hand)."""
    for path in sorted((work / "argocd").glob("*.yaml")):
        text = path.read_text()
        if COMMITTED_REPO_URL in text:
            path.write_text(text.replace(COMMITTED_REPO_URL, url))


class LocalArgoCD:
    """Argo CD's controllers and repo-server against `plane`, in namespace argocd."""

    def __init__(self, plane: LocalControlPlane):
        self.plane = plane
        self.dir = plane.workdir / "argocd"
        self.kubeconfig = self.dir / "kubeconfig"
        self.redis_port, self.repo_port = free_port(), free_port()
        self.repo_metrics_port, self.controller_metrics_port = free_port(), free_port()
        self.appset_ports = (free_port(), free_port(), free_port())  # metrics, probe, webhook
        self.procs: dict[str, subprocess.Popen] = {}

    # -- install ------------------------------------------------------------------------------------

    def install(self) -> None:
        """CRDs, namespace, upstream ConfigMaps/Secret, then argocd/argocd-cm.yaml (server-side, own manager)."""
        module = argocd_module_dir()
        kube = self.plane.kube()
        for crd in load_yaml_docs(module / "manifests/crds/application-crd.yaml") + \
                load_yaml_docs(module / "manifests/crds/applicationset-crd.yaml") + \
                load_yaml_docs(module / "manifests/crds/appproject-crd.yaml"):
            self.apply(crd, manager="argocd-install")
        self.wait_crds_established([c["metadata"]["name"] for c in load_yaml_docs(module / "manifests/crds/application-crd.yaml")
                                    + load_yaml_docs(module / "manifests/crds/applicationset-crd.yaml")
                                    + load_yaml_docs(module / "manifests/crds/appproject-crd.yaml")])
        if kube.get(f"/api/v1/namespaces/{NAMESPACE}") is None:
            kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": NAMESPACE}})
        for obj in load_yaml_docs(module / "manifests/core-install.yaml"):
            if obj["kind"] in ("ConfigMap", "Secret"):
                obj["metadata"]["namespace"] = NAMESPACE
                self.apply(obj, manager="argocd-install")
        # What argocd-server does on its first start (server/server.go); no argocd-server runs here: the
        # built-in `default` project (root.yaml uses it) and the signing key.
        self.apply({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                    "metadata": {"name": "default", "namespace": NAMESPACE},
                    "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                             "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}, manager="argocd-server")
        self.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-secret", "namespace": NAMESPACE},
                    "stringData": {"server.secretkey": secrets.token_urlsafe(32)}}, manager="argocd-server")
        for obj in load_yaml_docs(ARGOCD_CM):
            self.apply(obj, manager="kuberay-llm")

    def apply(self, obj: dict, manager: str = "kuberay-llm-tests") -> dict:
        """Server-side apply of one object (as `kubectl apply --server-side --field-manager=manager`)."""
        kube = self.plane.kube()
        api_version, kind = obj["apiVersion"], obj["kind"]
        resource = kube.resource(api_version, kind)
        if resource is None:
            raise RuntimeError(f"the API server does not serve {api_version} {kind}")
        namespace = obj["metadata"].get("namespace") or (NAMESPACE if resource.namespaced else None)
        return kube.request("PATCH", resource.path(namespace, obj["metadata"]["name"]),
                            query=[("fieldManager", manager), ("force", "true")], body=obj,
                            content_type="application/apply-patch+yaml", timeout=60)

    def wait_crds_established(self, names: list[str]) -> None:
        kube = self.plane.kube()
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                crd = kube.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                if any(c["type"] == "Established" and c["status"] == "True"
                       for c in (crd.get("status") or {}).get("conditions") or []):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established after 60s")
                time.sleep(0.1)
        while kube.get("/apis/argoproj.io/v1alpha1") is None:
            if time.monotonic() > deadline:
                raise RuntimeError("argoproj.io/v1alpha1 not served after the CRDs were established")
            time.sleep(0.1)

    # -- processes ----------------------------------------------------------------------------------

    def start(self) -> LocalArgoCD:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.install()
        config = json.loads(kubeconfig_text(self.plane.server, ADMIN_TOKEN, self.plane.ca_file))
        config["contexts"][0]["context"]["namespace"] = NAMESPACE  # the controllers' namespace
        self.kubeconfig.write_text(json.dumps(config))
        tools = self.dir / "path"  # the kustomize and helm the repo-server runs: the pinned ones
        tools.mkdir(exist_ok=True)
        for name in ("kustomize", "helm"):
            link = tools / name
            if not link.exists():
                link.symlink_to(toolchain.tool(name))
        # The repo-server runs git-verify-wrapper.sh from PATH on every manifest generation (Argo CD's image
        # copies hack/git-verify-wrapper.sh to /usr/local/bin): the pinned module's own script.
        wrapper = tools / "git-verify-wrapper.sh"
        wrapper.write_text(f'#!/bin/sh\nexec sh {argocd_module_dir() / "hack/git-verify-wrapper.sh"} "$@"\n')
        wrapper.chmod(0o755)
        for sub in ("tls", "ssh", "gpg", "home", "tmp"):
            (self.dir / sub).mkdir(exist_ok=True)
        base_env = {
            "KUBECONFIG": str(self.kubeconfig), "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_TLS_DATA_PATH": str(self.dir / "tls"), "ARGOCD_SSH_DATA_PATH": str(self.dir / "ssh"),
            "ARGOCD_GNUPGHOME": str(self.dir / "gpg"), "ARGOCD_GPG_ENABLED": "false",
            "HOME": str(self.dir / "home"), "TMPDIR": str(self.dir / "tmp"),
            "GIT_CONFIG_NOSYSTEM": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        argocd = str(argocd_binary())
        redis_addr = f"127.0.0.1:{self.redis_port}"
        repo_addr = f"127.0.0.1:{self.repo_port}"

        self.procs["redis"] = self.plane._spawn("redis", [str(redis_binary()), "--addr", redis_addr])
        self.plane._wait_until(lambda: _port_open(self.redis_port), "redis", self.procs["redis"])

        # A closed port as the HTTPS proxy of the repo-server: remote Helm repositories fail at once, offline.
        dead_proxy = f"http://127.0.0.1:{free_port()}"
        self.procs["repo-server"] = self.plane._spawn("repo-server", [
            argocd, "--address", "127.0.0.1", "--port", str(self.repo_port), "--disable-tls", "--client-ca-path=",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(self.repo_metrics_port),
            "--redis", redis_addr, "--logformat", "text"],
            env={**base_env, "ARGOCD_BINARY_NAME": "argocd-repo-server",
                 "HTTPS_PROXY": dead_proxy, "https_proxy": dead_proxy, "HTTP_PROXY": dead_proxy,
                 "http_proxy": dead_proxy})
        self.plane._wait_until(lambda: LocalControlPlane._http_ok(f"http://127.0.0.1:{self.repo_metrics_port}/healthz"),
                               "repo-server", self.procs["repo-server"])

        self.procs["application-controller"] = self.plane._spawn("application-controller", [
            argocd, "--repo-server", repo_addr, "--repo-server-plaintext", "--redis", redis_addr,
            "--metrics-port", str(self.controller_metrics_port), "--status-processors", "4",
            "--operation-processors", "4", "--logformat", "text",
            # each resource's health and message in the Application's status (kubectl can read it), not only in
            # Redis's resource tree (what argocd-server would show)
            "--persist-resource-health"],
            env={**base_env, "ARGOCD_BINARY_NAME": "argocd-application-controller"})
        self.plane._wait_until(
            lambda: LocalControlPlane._http_ok(f"http://127.0.0.1:{self.controller_metrics_port}/healthz"),
            "application-controller", self.procs["application-controller"])

        metrics, probe, webhook = self.appset_ports
        self.procs["applicationset-controller"] = self.plane._spawn("applicationset-controller", [
            argocd, "--argocd-repo-server", repo_addr, "--repo-server-plaintext",
            "--metrics-addr", f"127.0.0.1:{metrics}", "--probe-addr", f"127.0.0.1:{probe}",
            "--webhook-addr", f"127.0.0.1:{webhook}", "--logformat", "text"],
            env={**base_env, "ARGOCD_BINARY_NAME": "argocd-applicationset-controller"})
        # it registers no readiness check: its probe port answering means its manager runs
        self.plane._wait_until(lambda: _port_open(probe), "applicationset-controller",
                               self.procs["applicationset-controller"])

    def stop(self) -> None:
        for name in ("applicationset-controller", "application-controller", "repo-server", "redis"):
            LocalControlPlane._stop(self.procs.pop(name, None))

    def logs(self, lines: int = 12, width: int = 400) -> str:
        """The last warnings and errors of each Argo CD process (their info lines are mostly reconcile noise)."""
        out = []
        for name in ("repo-server", "application-controller", "applicationset-controller"):
            text = self.plane.log_tail(name, 2000).splitlines()
            picked = [line[:width] for line in text if "level=info" not in line][-lines:]
            out.append(f"--- {name}.log (warnings and errors)\n" + "\n".join(picked))
        return "\n".join(out)

    # -- reading Argo CD's state --------------------------------------------------------------------

    def app(self, name: str) -> dict | None:
        return self.plane.kube().get(f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/applications/{name}")

    def refresh(self, name: str, kind: str = "normal") -> None:
        """What `argocd app get --refresh` (or a Git webhook) does: ask the controller to compare again."""
        self.plane.kube().request(
            "PATCH", f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/applications/{name}",
            body={"metadata": {"annotations": {"argocd.argoproj.io/refresh": kind}}},
            content_type="application/merge-patch+json")

    def finish_foreground_deletion(self, name: str) -> None:
        """Argo CD prunes a child Application with foreground propagation; the garbage collector of
        kube-controller-manager then removes the `foregroundDeletion` finalizer. No controller-manager runs
        on this control plane, so this does what it would do for an object without dependents."""
        path = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/applications/{name}"
        app = self.plane.kube().get(path)
        if app and app["metadata"].get("deletionTimestamp"):
            rest = [f for f in app["metadata"].get("finalizers") or [] if f != "foregroundDeletion"]
            # With the resourceVersion read: Argo CD removes its own finalizer meanwhile, and a patch from the older
            # read would put it back ("no new finalizers can be added if the object is being deleted"). A conflict
            # means the object changed: the caller's next poll reads it again.
            try:
                self.plane.kube().request("PATCH", path, body={"metadata": {
                    "finalizers": rest or None, "resourceVersion": app["metadata"]["resourceVersion"]}},
                    content_type="application/merge-patch+json")
            except ApiError as err:
                if err.status not in (409, 422):
                    raise

    def wait_for(self, what: str, probe, timeout: float = 60, interval: float = 0.5):
        """Poll `probe()` until it returns a truthy value; fail with what was last seen and the logs."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"{what}: not reached in {timeout:.0f}s\n{self.logs()}")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    """`make argocd-local`: Argo CD syncing a snapshot of this checkout into a fresh local control plane, until
    Ctrl-C. The KubeRay operator Application is left out: no pod runs on this control plane, so the operator's
    Deployment would never be Healthy and the root would wait on that wave forever (its CRDs are installed)."""
    plane = LocalControlPlane()
    server = argocd = None
    try:
        plane.start()
        server = GitServer(plane).start()
        server.commit("point argocd/ at the local git daemon", lambda w: substitute_repo_url(w, server.url))
        server.commit("no KubeRay operator Application: nothing runs its pods here",
                      lambda w: (w / "argocd/kuberay-operator.yaml").unlink())
        argocd = LocalArgoCD(plane).start()
        argocd.apply(load_yaml_docs(server.work / "argocd" / "root.yaml")[0])
        kubectl = toolchain.bin_dir().parent / ".venv" / "bin" / "kubectl"
        print(f"""
Argo CD {toolchain.pins()['ARGOCD_VERSION']} (application-controller, repo-server, applicationset-controller) syncs
{server.url}, a snapshot of this checkout, into the API server {plane.server}.

  export KUBECONFIG={argocd.kubeconfig}
  {kubectl} get applications -n argocd -w
  {kubectl} get application -n argocd llm-small -o jsonpath='{{range .status.resources[*]}}{{.kind}}/{{.name}} {{.status}} {{.health.status}}: {{.health.message}}{{"\\n"}}{{end}}'
  {kubectl} get rayservices -A

(`argocd app list --core` needs Argo CD's own pods to port-forward to; none run here, so use kubectl.)

Commit in {server.work} and `git push served main` to change what Argo CD syncs.
Logs: {plane.workdir}/*.log. Ctrl-C stops everything and deletes {plane.workdir}.""", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.pause()
    except KeyboardInterrupt:
        pass
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        if argocd:
            argocd.stop()
        if server:
            server.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
