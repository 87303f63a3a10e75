"""`kuberay-llm wait` verdicts against a real API server. The operator does not run here: each test writes
the RayService status (status subresource) and pod status the way KubeRay and the kubelet would, then
asserts the verdict, the cause printed and the exit code of the real CLI process."""

from __future__ import annotations

import datetime
import time

import pytest

from cpkit import (container_waiting, create_pod, create_pod_event, create_rayservice, finish, ready, run_cli,
                   serving_status, start_cli, unschedulable, wait_for_line, within, write_pod_status, write_status)

pytestmark = pytest.mark.timeout(240)  # a hung watch fails its test, not the whole run

CLUSTER_SUFFIX = "-abcde"


def start_wait(controlplane, kube, name, *args, **env):
    proc = start_cli(["wait", name, "-n", kube.namespace, *args], controlplane.kubeconfig, **env)
    wait_for_line(proc, "] ")  # the first progress line: it has listed and is watching
    return proc


def test_progression_to_healthy_is_reported_within_a_second(controlplane, kube):
    name = "prog"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name)
    write_status(kube, name, serving_status(cluster, "DEPLOYING", {"LLMServer:m": "UPDATING"},
                                            ready_condition=ready("False", "Initializing")))
    wait_for_line(proc, "DEPLOYING")
    write_status(kube, name, serving_status(cluster, "RUNNING", {"LLMServer:m": "UPDATING"},
                                            ready_condition=ready("False", "ZeroServeEndpoints")))
    wait_for_line(proc, "UPDATING")
    assert proc.poll() is None, "reported before Ready=True"
    written = time.monotonic()
    write_status(kube, name, serving_status(cluster))
    code, out, err = finish(proc)
    elapsed = time.monotonic() - written
    assert code == 0, err
    assert f"RayService {kube.namespace}/{name} is healthy" in out
    assert elapsed < within(1.0), f"HEALTHY reported {elapsed:.2f}s after the status write"


def rayservice_event(kube, name: str, reason: str, message: str, when: str) -> dict:
    """An event on a RayService as KubeRay's event recorder writes it (a core v1 Event)."""
    return kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/events", body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{reason.lower()}.{time.time_ns()}"},
        "involvedObject": {"kind": "RayService", "name": name, "namespace": kube.namespace, "apiVersion": "ray.io/v1"},
        "reason": reason, "message": message, "type": "Normal", "count": 1, "source": {"component": "rayservice-controller"},
        "firstTimestamp": when, "lastTimestamp": when})


def test_the_status_of_the_reconcile_that_submitted_a_new_serve_config_is_not_healthy(controlplane, kube):
    """KubeRay v1.6.2 writes the new observedGeneration in the same reconcile that submits the changed serve
    config, with the application statuses Ray gave *before* it (the old config RUNNING): `wait` right after an
    apply must not call that healthy. A status from a later reconcile (DEPLOYING, then RUNNING) is."""
    name = "resubmitted"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    t0 = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stamp = lambda seconds: (t0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    rayservice_event(kube, name, "UpdatedServeApplications",
                     f"Updated serve applications to the RayCluster {kube.namespace}/{cluster}", stamp(0))
    write_status(kube, name, {**serving_status(cluster), "lastUpdateTime": stamp(0)})
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_CONFIG_SETTLE="1h")
    first = "".join(proc.stderr_seen)  # start_wait read the first progress line
    assert f"serve config submitted to Ray at {t0:%H:%M:%S} UTC, no newer status from KubeRay yet" in first, first
    time.sleep(1)
    assert proc.poll() is None, "took the status written with the submission for healthy"
    write_status(kube, name, {**serving_status(cluster, "DEPLOYING", {"LLMServer:m": "UPDATING"}),
                              "lastUpdateTime": stamp(2)})
    wait_for_line(proc, "DEPLOYING")
    assert proc.poll() is None
    written = time.monotonic()
    write_status(kube, name, {**serving_status(cluster), "lastUpdateTime": stamp(40)})
    code, out, err = finish(proc)
    assert code == 0, err
    assert f"RayService {kube.namespace}/{name} is healthy" in out
    assert time.monotonic() - written < within(1.0)


def test_a_config_change_that_never_leaves_running_counts_after_the_settle(controlplane, kube):
    """Ray applies some changes (deployment options only) without the application leaving RUNNING between two
    KubeRay reads; then no newer status comes, and healthy counts once it held for KUBERAY_LLM_CONFIG_SETTLE."""
    name = "quickchange"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rayservice_event(kube, name, "UpdatedServeApplications",
                     f"Updated serve applications to the RayCluster {kube.namespace}/{cluster}", now)
    write_status(kube, name, {**serving_status(cluster), "lastUpdateTime": now})
    started = time.monotonic()
    result = run_cli(["wait", name, "-n", kube.namespace], controlplane.kubeconfig, KUBERAY_LLM_CONFIG_SETTLE="3s")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 3
    assert "serve config submitted to Ray at" in result.stderr


def test_stale_generation_is_not_healthy(controlplane, kube):
    name = "stale"
    create_rayservice(kube, name)
    write_status(kube, name, serving_status(name + CLUSTER_SUFFIX), generation=0)
    result = run_cli(["wait", name, "-n", kube.namespace, "--timeout", "3s"], controlplane.kubeconfig)
    assert result.returncode == 4, result.stderr  # timed out
    assert "generation 1 not yet observed" in result.stderr


def test_deploy_failed_fails_fast_with_rays_message(controlplane, kube):
    name = "deployfail"
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name)
    write_status(kube, name, serving_status(
        name + CLUSTER_SUFFIX, "DEPLOY_FAILED", {"LLMServer:m": "UNHEALTHY"},
        message="Traceback (most recent call last):\n  File x\nValueError: max_model_len 999999 exceeds the model's",
        ready_condition=ready("False", "ZeroServeEndpoints")))
    code, _, err = finish(proc)
    assert code == 1
    assert "application llm_app DEPLOY_FAILED: ValueError: max_model_len 999999" in err
    assert "Traceback" in err  # Ray's message follows the verdict line


def test_hugging_face_gated_model_points_at_the_hf_token_component(controlplane, kube):
    name = "gated"
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name)
    write_status(kube, name, serving_status(
        name + CLUSTER_SUFFIX, "DEPLOYING", {"LLMServer:m": "UPDATING"},
        message="huggingface_hub.errors.GatedRepoError: 403 Client Error. Cannot access gated repo for url "
                "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/resolve/main/config.json. "
                "Access to model meta-llama/Llama-3.1-8B-Instruct is restricted.",
        ready_condition=ready("False", "Initializing")))
    code, _, err = finish(proc)
    assert code == 1
    assert "components/hf-token" in err and "Hugging Face" in err


def test_initializing_timeout(controlplane, kube):
    name = "inittimeout"
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name)
    write_status(kube, name, {"conditions": [ready("False", "InitializingTimeout", "not ready after 30m")]})
    code, _, err = finish(proc)
    assert code == 1
    assert "initializing-timeout" in err and "not ready after 30m" in err


def test_deletion_mid_wait(controlplane, kube):
    name = "deleted"
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name)
    kube.request("DELETE", f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices/{name}")
    code, _, err = finish(proc)
    assert code == 1
    assert f"RayService {kube.namespace}/{name} was deleted while waiting" in err


def test_missing_rayservice_is_a_failure_not_a_hang(controlplane, kube):
    result = run_cli(["wait", "nope", "-n", kube.namespace, "--timeout", "20s"], controlplane.kubeconfig)
    assert result.returncode == 1
    assert "not found" in result.stderr and "kuberay-llm apply" in result.stderr


def test_unschedulable_gpu_pods_name_the_group_and_the_shortfall(controlplane, kube):
    name = "nogpu"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    write_status(kube, name, {"conditions": [ready("False", "Initializing")],
                              "activeServiceStatus": {"rayClusterName": cluster}})
    for i in range(2):
        create_pod(kube, cluster, f"{cluster}-gpu-group-worker-{i}",
                   resources={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "8"})
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_UNSCHEDULABLE_GRACE="1s")
    started = time.monotonic()
    for i in range(2):
        write_pod_status(kube, f"{cluster}-gpu-group-worker-{i}",
                         unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 "
                                       "nodes are available: 3 No preemption victims found for incoming pod."))
    code, _, err = finish(proc)
    assert code == 1
    assert ("worker group gpu-group needs 2 pods with 8 free nvidia.com/gpu each; "
            "the cluster has no node with 8 free nvidia.com/gpu") in err, err
    assert time.monotonic() - started < within(5)


def test_pods_without_a_scheduler_are_not_scheduled_yet_never_healthy(controlplane, kube):
    name = "pending"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    create_pod(kube, cluster, f"{cluster}-head", group="headgroup", node_type="head")
    result = run_cli(["wait", name, "-n", kube.namespace, "--timeout", "3s"], controlplane.kubeconfig)
    assert result.returncode == 4  # timed out
    assert "not scheduled yet" in result.stderr
    assert "healthy" not in result.stdout


def test_crash_loop_back_off(controlplane, kube):
    name = "crash"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-head"
    create_pod(kube, cluster, pod, group="headgroup", node_type="head")
    proc = start_wait(controlplane, kube, name)
    write_pod_status(kube, pod, container_waiting("ray-head", "CrashLoopBackOff", "back-off 40s restarting",
                                                  {"exitCode": 1, "reason": "Error"}, restarts=3))
    code, _, err = finish(proc)
    assert code == 1
    assert f"pod {pod} container ray-head is in CrashLoopBackOff (exit code 1, Error)" in err
    assert "no logs" in err  # no kubelet here: the log request fails, and says why


MISSING_IMAGE = "rayproject/ray-llm:2.60.0-py311-cu128"  # a tag Ray never published


def test_image_pull_back_off(controlplane, kube):
    name = "pull"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-head"
    create_pod(kube, cluster, pod, group="headgroup", node_type="head", image=MISSING_IMAGE)
    proc = start_wait(controlplane, kube, name)
    write_pod_status(kube, pod, container_waiting(
        "ray-head", "ImagePullBackOff", f'Back-off pulling image "{MISSING_IMAGE}": manifest unknown',
        image=MISSING_IMAGE))
    code, _, err = finish(proc)
    assert code == 1
    assert f"pod {pod} cannot pull image {MISSING_IMAGE} (ImagePullBackOff)" in err


def test_a_missing_tag_fails_at_once_from_the_kubelets_failed_event(controlplane, kube):
    """In ImagePullBackOff the container status says only 'Back-off pulling image'; the cause is in the
    kubelet's Failed event. A tag that does not exist fails the wait at once, not after the pull grace."""
    name = "pullevent"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-gpu-group-worker-x"
    create_pod(kube, cluster, pod, image=MISSING_IMAGE)
    cause = (f'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/{MISSING_IMAGE}": '
             f'failed to resolve reference "docker.io/{MISSING_IMAGE}": docker.io/{MISSING_IMAGE}: not found')
    create_pod_event(kube, pod, "Failed", f'Failed to pull image "{MISSING_IMAGE}": {cause}')
    create_pod_event(kube, pod, "BackOff", f'Back-off pulling image "{MISSING_IMAGE}"', type_="Normal")
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_IMAGE_PULL_GRACE="10m")
    written = time.monotonic()
    write_pod_status(kube, pod, container_waiting("ray-worker", "ImagePullBackOff",
                                                  f'Back-off pulling image "{MISSING_IMAGE}"', image=MISSING_IMAGE))
    code, _, err = finish(proc)
    assert code == 1, err
    assert time.monotonic() - written < within(10)
    assert (f"pod {pod} cannot pull image {MISSING_IMAGE} (ImagePullBackOff): {cause}; rayproject/ray-llm is "
            "published as <ray>-py312-cu130 only") in err
    for command in ("status", "diagnose"):
        result = run_cli([command, name, "-n", kube.namespace], controlplane.kubeconfig,
                         KUBERAY_LLM_IMAGE_PULL_GRACE="10m")
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert f"FAILED: pod {pod} cannot pull image {MISSING_IMAGE} (ImagePullBackOff)" in result.stdout


def test_a_transient_pull_error_waits_for_its_grace(controlplane, kube):
    """A registry timeout can clear by itself: it is shown on the live line and fails only after the grace."""
    name = "pulltransient"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-gpu-group-worker-y"
    create_pod(kube, cluster, pod)
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_IMAGE_PULL_GRACE="3s")
    write_pod_status(kube, pod, container_waiting("ray-worker", "ErrImagePull", "dial tcp: i/o timeout"))
    wait_for_line(proc, "ErrImagePull")
    assert proc.poll() is None, "a transient pull error failed the wait before its grace"
    code, _, err = finish(proc)
    assert code == 1
    assert f"pod {pod} cannot pull image rayproject/ray-llm:2.60.0-py312-cu130 (ErrImagePull): dial tcp: i/o timeout" in err


def test_oom_killed(controlplane, kube):
    name = "oom"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-gpu-group-worker-x"
    create_pod(kube, cluster, pod, resources={"cpu": "1", "memory": "2Gi"})
    proc = start_wait(controlplane, kube, name)
    write_pod_status(kube, pod, container_waiting("ray-worker", "ContainerCreating", "",
                                                  {"exitCode": 137, "reason": "OOMKilled"}, restarts=1))
    code, _, err = finish(proc)
    assert code == 1
    assert f"pod {pod} container ray-worker was OOMKilled (memory limit 2Gi)" in err


def test_transient_failures_that_recover_do_not_fail_the_wait(controlplane, kube):
    name = "transient"
    cluster = name + CLUSTER_SUFFIX
    create_rayservice(kube, name)
    pod = f"{cluster}-head"
    create_pod(kube, cluster, pod, group="headgroup", node_type="head")
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_UNHEALTHY_GRACE="5s", KUBERAY_LLM_IMAGE_PULL_GRACE="5s")
    write_pod_status(kube, pod, container_waiting("ray-head", "ErrImagePull", "i/o timeout"))
    wait_for_line(proc, "ErrImagePull")
    write_status(kube, name, serving_status(cluster, "UNHEALTHY", {"LLMServer:m": "UNHEALTHY"},
                                            ready_condition=ready("False", "ZeroServeEndpoints")))
    wait_for_line(proc, "UNHEALTHY")
    write_pod_status(kube, pod, {"phase": "Running", "conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]})
    write_status(kube, name, serving_status(cluster))
    code, out, err = finish(proc)
    assert code == 0, err
    assert "is healthy" in out


def test_bad_timeout_is_a_usage_error(controlplane, kube):
    result = run_cli(["wait", "x", "-n", kube.namespace, "--timeout", "soon"], controlplane.kubeconfig)
    assert result.returncode == 2  # usage
    assert "--timeout: 'soon' is not a duration" in result.stderr


def test_kuberay_cannot_create_pods(controlplane, kube):
    """KubeRay's FailedToCreateWorkerPod event (e.g. a privileged sidecar on a cluster that forbids it)."""
    name = "nopods"
    create_rayservice(kube, name)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def event(suffix, kind, reason, message, when):
        kube.request("POST", f"/api/v1/namespaces/{kube.namespace}/events", body={
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}-abcde.{suffix}"},
            "involvedObject": {"kind": kind, "name": name if kind == "RayService" else f"{name}-abcde",
                               "namespace": kube.namespace},
            "reason": reason, "type": "Warning", "source": {"component": "ray-operator"}, "message": message,
            "firstTimestamp": when, "lastTimestamp": when})

    # a cache race KubeRay retries, and a rejection of a spec older than the current one: neither fails the wait
    event("race", "RayCluster", "FailedToCreateRayCluster", f'rayclusters.ray.io "{name}-abcde" already exists', now)
    event("stale", "RayService", "InvalidRayServiceSpec", "spec.rayClusterConfig is invalid", "2026-01-01T00:00:00Z")
    proc = start_wait(controlplane, kube, name)  # its first assessment sees both events and carries on
    event("invalid", "RayCluster", "FailedToCreateWorkerPod",
          f'Pod "{name}-abcde-gpu-group-worker-x" is invalid: spec.containers[1].securityContext.privileged: '
          "Forbidden: disallowed by cluster policy", now)
    code, _, err = finish(proc)
    assert code == 1
    assert f"KubeRay cannot create the pods of RayCluster {name}-abcde" in err and "privileged" in err


def test_unhealthy_that_persists_past_its_grace_fails_with_rays_message(controlplane, kube):
    name = "unhealthy"
    create_rayservice(kube, name)
    proc = start_wait(controlplane, kube, name, KUBERAY_LLM_UNHEALTHY_GRACE="1s")
    started = time.monotonic()
    write_status(kube, name, serving_status(f"{name}-abcde", "UNHEALTHY", {"LLMServer:m": "UNHEALTHY"},
                                            ready_condition=ready("False", "ZeroServeEndpoints")))
    kube.request("PATCH", f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices/{name}/status",
                 body={"status": {"activeServiceStatus": {"applicationStatuses": {"llm_app": {
                     "serveDeploymentStatuses": {"LLMServer:m": {"status": "UNHEALTHY",
                                                                 "message": "replica health check failed"}}}}}}},
                 content_type="application/merge-patch+json")
    code, _, err = finish(proc)
    assert code == 1
    assert "application llm_app UNHEALTHY for 1s: LLMServer:m: replica health check failed" in err, err
    assert time.monotonic() - started < within(5)
