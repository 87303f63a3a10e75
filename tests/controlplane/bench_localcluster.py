"""`make bench-cluster`: the real path on the local cluster (`kuberay-llm cluster up`; needs root), timed.

1. cold: `kuberay-llm apply` of local-cpu (offline tiny model) in a fresh namespace -> `kuberay-llm wait` exit 0.
   A new RayCluster each run: KubeRay creates the pods, the local kubelet starts `ray start`, the operator
   PUTs serveConfigV2, Ray Serve starts vLLM. The RayService is deleted between runs.
2. warm: a serve-config-only change (engine_kwargs.max_num_seqs, alternating) re-applied to the healthy
   RayService -> `wait` exit 0: the same Ray cluster, vLLM restarted by Serve.
3. verdict latencies, on the same runs: KubeRay's status write that makes the RayService healthy (seen by
   a watch of our own) -> `wait`'s exit; and the DEPLOY_FAILED status write (a missing model_source) ->
   `wait`'s failure exit.

Prints medians over KUBERAY_LLM_BENCH_RUNS runs (default 3) and every run, with the machine's CPU count
and load, so a number is never read without its conditions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpkit import CLI, REPO, cli_env  # noqa: E402
from kuberay_llm.cluster.controlplane import Cluster  # noqa: E402
from kuberay_llm.cluster.tiny_overlay import tiny_overlay  # noqa: E402

RUNS = int(os.environ.get("KUBERAY_LLM_BENCH_RUNS", "3"))
NAME = "local-cpu-llm"
WAIT_TIMEOUT = "20m"


class Watcher(threading.Thread):
    """Records when the RayService's status first says healthy / DEPLOY_FAILED for its current generation."""

    def __init__(self, kube, namespace: str):
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.healthy_at: float | None = None
        self.failed_at: float | None = None
        self.changing = False
        self.stop = threading.Event()

    def reset(self) -> None:
        # After a serve-config change KubeRay writes the new observedGeneration while the applications still
        # show the old config RUNNING: healthy counts only once they have been seen leaving RUNNING.
        self.healthy_at = self.failed_at = None
        self.changing = False

    def run(self) -> None:
        path = f"/apis/ray.io/v1/namespaces/{self.namespace}/rayservices"
        version = self.kube.request("GET", path)["metadata"]["resourceVersion"]
        while not self.stop.is_set():
            try:
                for event in self.kube.watch(path, [("fieldSelector", f"metadata.name={NAME}")], version):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.observe(obj)
            except Exception:  # noqa: BLE001 - re-list and go on (410, API server restart)
                if self.stop.wait(0.5):
                    return
                try:
                    version = self.kube.request("GET", path)["metadata"]["resourceVersion"]
                except Exception:  # noqa: BLE001 - the cluster may be going down
                    continue

    def observe(self, obj: dict) -> None:
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return
        now = time.monotonic()
        app = ((status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}).get("llm_app") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        deployments = {d.get("status") for d in (app.get("serveDeploymentStatuses") or {}).values()}
        serving = ready and app.get("status") == "RUNNING" and deployments == {"HEALTHY"}
        if not serving:
            self.changing = True
        if self.healthy_at is None and serving and self.changing:
            self.healthy_at = now
        if self.failed_at is None and app.get("status") == "DEPLOY_FAILED":
            self.failed_at = now


def cli(cluster: Cluster, *args: str, timeout: float = 1500) -> tuple[int, float, str]:
    """Exit code, monotonic exit time and output of one CLI run."""
    proc = subprocess.run([*CLI, *args], env=cli_env(cluster.kubeconfig), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)
    return proc.returncode, time.monotonic(), proc.stdout + proc.stderr


def overlay(label: str, edit=None) -> Path:
    return tiny_overlay("local-cpu", REPO / ".work" / "bench-cluster" / label, edit=edit)


def engine(max_num_seqs: int):
    def edit(config):
        config["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]["max_num_seqs"] = max_num_seqs
        return config
    return edit


def missing_model(config):
    config["applications"][0]["args"]["llm_configs"][0]["model_loading_config"]["model_source"] = \
        f"/nonexistent/models/{uuid.uuid4().hex[:8]}"
    return config


def apply_and_wait(cluster: Cluster, watcher: Watcher, namespace: str, source: Path, expect: int) -> dict:
    watcher.reset()
    start = time.monotonic()
    code, _, out = cli(cluster, "apply", str(source), "-n", namespace, "--force-conflicts")
    if code != 0:
        sys.exit(f"apply failed: {out}")
    # `wait` starts right after the apply: KubeRay's first status after a serve-config change shows the new
    # generation with the old applications RUNNING, and `wait` must not take that for healthy.
    code, ended, out = cli(cluster, "wait", NAME, "-n", namespace, "--timeout", WAIT_TIMEOUT)
    if code != expect:
        sys.exit(f"wait exit {code}, expected {expect}:\n{out[-3000:]}")
    for _ in range(20):  # the watcher's own watch may deliver the same status a moment later
        if (watcher.healthy_at if expect == 0 else watcher.failed_at) is not None:
            break
        time.sleep(0.1)
    written = watcher.healthy_at if expect == 0 else watcher.failed_at
    if expect == 0 and written is None:
        sys.exit(f"`wait` said healthy before the changed applications were seen leaving RUNNING:\n{out[-3000:]}")
    return {"total": ended - start, "verdict": (ended - written) if written else float("nan")}


def median(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f}s" if values else "    n/a"


def main() -> int:
    cluster = Cluster(REPO / ".work" / "bench-cluster" / "cluster")
    started = time.monotonic()
    cluster.up(out=sys.stderr)
    up_s = time.monotonic() - started
    results: dict[str, list[dict]] = {"cold": [], "warm": [], "failed": []}
    try:
        kube = cluster.kube()
        for run in range(RUNS):
            namespace = f"bench-{run}"
            kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": namespace}})
            while kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default") is None:
                time.sleep(0.2)
            watcher = Watcher(cluster.kube(namespace), namespace)
            watcher.start()
            results["cold"].append(apply_and_wait(cluster, watcher, namespace, overlay("base"), 0))
            print(f"run {run}: cold {results['cold'][-1]}", file=sys.stderr, flush=True)
            before = kube.request("GET", f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/{NAME}")
            results["warm"].append(apply_and_wait(cluster, watcher, namespace, overlay("seqs4", engine(4)), 0))
            after = kube.request("GET", f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/{NAME}")
            if after["status"]["activeServiceStatus"]["rayClusterName"] != \
                    before["status"]["activeServiceStatus"]["rayClusterName"]:
                sys.exit("a serve-config-only change started a new Ray cluster: not an in-place update")
            print(f"run {run}: warm {results['warm'][-1]}", file=sys.stderr, flush=True)
            results["failed"].append(apply_and_wait(cluster, watcher, namespace, overlay("missing", missing_model), 1))
            print(f"run {run}: deploy-failed {results['failed'][-1]}", file=sys.stderr, flush=True)
            watcher.stop.set()
            cli(cluster, "delete", NAME, "-n", namespace, "--wait")
    finally:
        cluster.down(out=sys.stderr)
    load = os.getloadavg()
    print(f"\nlocal cluster bench: {RUNS} runs, {os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/"
          f"{load[2]:.1f} (1/5/15 min), cluster up {up_s:.1f}s")
    rows = [("apply -> wait HEALTHY, cold Ray (new RayCluster)", [r["total"] for r in results["cold"]]),
            ("serve-config change -> wait HEALTHY, warm Ray", [r["total"] for r in results["warm"]]),
            ("KubeRay's HEALTHY status write -> wait exit", [r["verdict"] for r in results["cold"] + results["warm"]]),
            ("missing model_source: apply -> wait exit 1", [r["total"] for r in results["failed"]]),
            ("DEPLOY_FAILED status write -> wait exit 1", [r["verdict"] for r in results["failed"]])]
    for label, values in rows:
        print(f"  {label:55s} median {median(values)}   runs: {', '.join(f'{v:.1f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
