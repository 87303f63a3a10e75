"""status, diagnose, delete and smoke against the real API server, and apply on a cluster without KubeRay."""

from __future__ import annotations

import pytest

from cpkit import (container_waiting, create_pod, create_rayservice, ready, run_cli, serving_status, unschedulable,
                   write_pod_status, write_status)
from localcluster import LocalControlPlane

pytestmark = pytest.mark.timeout(240)  # a hung watch fails its test, not the whole run


def test_status_exit_codes_follow_the_verdict(controlplane, kube):
    name = "st"
    cluster = f"{name}-abcde"
    create_rayservice(kube, name)
    write_status(kube, name, serving_status(cluster, "DEPLOYING", {"LLMServer:m": "UPDATING"},
                                            ready_condition=ready("False", "Initializing")))
    progressing = run_cli(["status", name, "-n", kube.namespace], controlplane.kubeconfig)
    assert progressing.returncode == 4, progressing.stderr
    assert "not healthy yet" in progressing.stdout and "application llm_app: DEPLOYING" in progressing.stdout
    write_status(kube, name, serving_status(cluster))
    healthy = run_cli(["status", name, "-n", kube.namespace], controlplane.kubeconfig)
    assert healthy.returncode == 0 and f"RayService {kube.namespace}/{name}: healthy" in healthy.stdout


def test_diagnose_shows_status_events_pod_conditions_and_logs_on_one_screen(controlplane, kube):
    name = "diag"
    cluster = f"{name}-abcde"
    create_rayservice(kube, name)
    write_status(kube, name, {"conditions": [ready("False", "Initializing")],
                              "activeServiceStatus": {"rayClusterName": cluster}})
    create_pod(kube, cluster, f"{cluster}-head", group="headgroup", node_type="head")
    write_pod_status(kube, f"{cluster}-head", container_waiting("ray-head", "CrashLoopBackOff", "back-off",
                                                                {"exitCode": 1, "reason": "Error"}, restarts=2))
    create_pod(kube, cluster, f"{cluster}-gpu-group-worker-a", resources={"nvidia.com/gpu": "1"})
    write_pod_status(kube, f"{cluster}-gpu-group-worker-a", unschedulable("0/1 nodes are available: 1 Insufficient "
                                                                          "nvidia.com/gpu."))
    kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/events", body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{cluster}-head.1"},
        "involvedObject": {"kind": "Pod", "name": f"{cluster}-head", "namespace": kube.namespace},
        "reason": "BackOff", "message": "Back-off restarting failed container ray-head", "type": "Warning",
        "count": 3, "lastTimestamp": "2026-01-01T00:00:00Z", "firstTimestamp": "2026-01-01T00:00:00Z",
        "source": {"component": "kubelet"}})
    result = run_cli(["diagnose", name, "-n", kube.namespace], controlplane.kubeconfig)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert f"== RayService {kube.namespace}/{name}: FAILED: pod {cluster}-head container ray-head is in CrashLoopBackOff" in out
    assert "condition Ready=False (Initializing)" in out
    assert "Warning BackOff x3 Pod/" in out
    assert "condition PodScheduled=False (Unschedulable): 0/1 nodes are available" in out
    assert "container ray-head: waiting CrashLoopBackOff: back-off (last: Error exit 1), restarts 2" in out
    assert "no logs" in out  # no kubelet: the log request is refused, and diagnose says so instead of crashing


def test_delete_waits_until_gone_and_tolerates_absence(controlplane, kube):
    create_rayservice(kube, "del")
    result = run_cli(["delete", "del", "-n", kube.namespace, "--wait"], controlplane.kubeconfig)
    assert result.returncode == 0 and "deleted" in result.stdout, result.stderr
    assert kube.get(f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices/del") is None
    again = run_cli(["delete", "del", "-n", kube.namespace], controlplane.kubeconfig)
    assert again.returncode == 1 and "not found" in again.stderr
    ignored = run_cli(["delete", "del", "-n", kube.namespace, "--ignore-not-found"], controlplane.kubeconfig)
    assert ignored.returncode == 0


def test_smoke_needs_a_ready_serve_pod(controlplane, kube):
    create_rayservice(kube, "sm")
    missing = run_cli(["smoke", "sm", "-n", kube.namespace], controlplane.kubeconfig)
    assert missing.returncode == 1
    assert f"Service {kube.namespace}/sm-serve-svc not found" in missing.stderr
    kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/services", body={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "sm-serve-svc"},
        "spec": {"selector": {"ray.io/serve": "true"}, "ports": [{"name": "serve", "port": 8000,
                                                                 "targetPort": "serve"}]}})
    no_pod = run_cli(["smoke", "sm", "-n", kube.namespace], controlplane.kubeconfig)
    assert no_pod.returncode == 1
    assert "no ready pod behind Service" in no_pod.stderr and "Traceback" not in no_pod.stderr


def test_smoke_endpoint_that_does_not_answer_is_a_connection_error(controlplane, kube):
    create_rayservice(kube, "sme")
    result = run_cli(["smoke", "sme", "-n", kube.namespace, "--endpoint", "http://127.0.0.1:9"],
                     controlplane.kubeconfig)
    assert result.returncode == 3
    assert "http://127.0.0.1:9: cannot connect" in result.stderr


@pytest.fixture(scope="module")
def bare_controlplane():
    """A second API server without the KubeRay CRDs."""
    plane = LocalControlPlane()
    plane._write_credentials()
    plane.start_etcd()
    plane.start_apiserver()
    from localcluster import ADMIN_TOKEN, kubeconfig_text
    plane.kubeconfig.write_text(kubeconfig_text(plane.server, ADMIN_TOKEN, plane.ca_file))
    yield plane
    plane.stop()


def test_apply_without_kuberay_says_how_to_install_the_operator(bare_controlplane):
    result = run_cli(["apply", "small"], bare_controlplane.kubeconfig)
    assert result.returncode == 1
    assert "no KubeRay CRDs" in result.stderr
    assert "helm install kuberay-operator kuberay/kuberay-operator --version 1.6.2" in result.stderr
    assert "argocd/" in result.stderr
    waited = run_cli(["wait", "llama-8b", "--timeout", "5s"], bare_controlplane.kubeconfig)
    assert waited.returncode == 3 and "install the KubeRay operator" in waited.stderr


def test_unreachable_cluster_is_exit_3(controlplane, tmp_path):
    from localcluster import free_port, kubeconfig_text
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(f"https://127.0.0.1:{free_port()}", "x", controlplane.ca_file))
    result = run_cli(["wait", "x", "--timeout", "5s"], config, KUBERAY_LLM_CONNECT_TIMEOUT="1s")
    assert result.returncode == 3 and "cannot reach the cluster" in result.stderr, result.stderr
