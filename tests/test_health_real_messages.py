"""Verdict rules fixed to what Ray and KubeRay really say, as seen on the local cluster
(tests/controlplane/test_localcluster.py):
- CrashLoopBackOff: the first restart is given its retry, the next one fails (a Ray worker's raylet gives its
  dashboard agent 15 s to start in Ray 2.60 and aborts on a busy node; the container restarts once and joins);
- DEPLOY_FAILED of a rolling update: the application only says which deployment failed; Ray's cause is the
  last line of that deployment's message."""

from __future__ import annotations

import datetime

import pytest

from kuberay_llm.harness.health import FAILED, HEALTHY, WAITING, Assessor, Observed
from kuberay_llm.harness.errors import UsageError as HarnessUsageError


def observed(restarts: int) -> Observed:
    rayservice = {"metadata": {"name": "llm", "namespace": "ns", "generation": 1},
                  "status": {"observedGeneration": 1, "conditions": [
                      {"type": "Ready", "status": "False", "reason": "Initializing"}]}}
    pod = {"metadata": {"name": "llm-abcde-cpu-group-worker-x", "labels": {"ray.io/group": "cpu-group"}},
           "spec": {"containers": [{"name": "ray-worker"}]},
           "status": {"phase": "Running", "containerStatuses": [{
               "name": "ray-worker", "restartCount": restarts, "ready": False,
               "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
               "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}
    return Observed(rayservice=rayservice, pods={pod["metadata"]["name"]: pod}, events=[],
                    logs={"llm-abcde-cpu-group-worker-x/ray-worker": "Exception: The current node timed out"})


def test_first_restart_is_waited_for():
    assert Assessor().assess(observed(1)).state == WAITING


def test_second_restart_fails_with_the_exit_and_the_last_log_line():
    verdict = Assessor().assess(observed(2))
    assert verdict.state == FAILED
    assert verdict.summary == ("pod llm-abcde-cpu-group-worker-x container ray-worker is in CrashLoopBackOff "
                               "(exit code 1, Error): Exception: The current node timed out")


def test_the_threshold_is_a_setting(monkeypatch):
    monkeypatch.setenv("KUBERAY_LLM_CRASHLOOP_RESTARTS", "1")
    assert Assessor().assess(observed(1)).state == FAILED
    monkeypatch.setenv("KUBERAY_LLM_CRASHLOOP_RESTARTS", "zero")
    with pytest.raises(HarnessUsageError, match=r"KUBERAY_LLM_CRASHLOOP_RESTARTS: 'zero' is not a positive whole "
                                                r"number of restarts \(e.g. 2\)"):
        Assessor().assess(observed(1))


# The statuses KubeRay v1.6.2 wrote for a serve-config change whose model_source does not exist (Ray 2.60).
ROLLING_UPDATE_FAILED = {
    "status": "DEPLOY_FAILED",
    "message": "Failed to update the deployments ['LLMServer:qwen2_5-0_5b-instruct'].",
    "serveDeploymentStatuses": {
        "LLMServer:qwen2_5-0_5b-instruct": {"status": "DEPLOY_FAILED", "message": (
            "The deployment failed to start 3 times in a row during a rolling update. This may be due to a problem "
            "with its constructor, initial health check or health checks failing. The update is stopped and replicas "
            "of the previous version keep running until a new deploy. See controller logs for details. Error:\n"
            "  File \"vllm_engine.py\", line 222, in _get_vllm_engine_config\n"
            "RuntimeError: Failed to create vLLM engine config: Repo id must be in the form 'repo_name' or "
            "'namespace/repo_name': '/nonexistent/models/abc'. Use `repo_type` argument if needed.")},
        "OpenAiIngress": {"status": "HEALTHY"}}}


def test_a_failed_rolling_update_names_rays_cause():
    verdict = Assessor().assess_applications([("", "llm_app", ROLLING_UPDATE_FAILED)])
    assert verdict.state == FAILED
    assert verdict.summary == (
        "application llm_app DEPLOY_FAILED: Failed to update the deployments ['LLMServer:qwen2_5-0_5b-instruct'].; "
        "LLMServer:qwen2_5-0_5b-instruct: RuntimeError: Failed to create vLLM engine config: Repo id must be in the "
        "form 'repo_name' or 'namespace/repo_name': '/nonexistent/models/abc'. Use `repo_type` argument if needed.")
    assert any("failed to start 3 times in a row" in line for line in verdict.details)


def test_a_deployment_that_did_not_fail_adds_no_cause():
    app = {**ROLLING_UPDATE_FAILED, "serveDeploymentStatuses": {
        "LLMServer:m": {"status": "UNHEALTHY", "message": "ValueError: max_model_len"}}}
    assert Assessor().assess_applications([("", "llm_app", app)]).summary == (
        "application llm_app DEPLOY_FAILED: Failed to update the deployments ['LLMServer:qwen2_5-0_5b-instruct'].")


# A serve-config change as KubeRay v1.6.2 reports it: the reconcile that submits the new config (event
# UpdatedServeApplications) writes the new observedGeneration with what Ray said before it (RUNNING, HEALTHY).
def changed_config(status_time: str, event_time: str) -> Observed:
    rayservice = {"metadata": {"name": "llm", "namespace": "ns", "generation": 2},
                  "status": {"observedGeneration": 2, "lastUpdateTime": status_time,
                             "conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}],
                             "activeServiceStatus": {"rayClusterName": "llm-abcde", "applicationStatuses": {
                                 "llm_app": {"status": "RUNNING", "serveDeploymentStatuses": {
                                     "LLMServer:m": {"status": "HEALTHY"}}}}}}}
    event = {"metadata": {"name": "llm.1", "uid": "1"}, "type": "Normal", "reason": "UpdatedServeApplications",
             "involvedObject": {"kind": "RayService", "name": "llm", "namespace": "ns"},
             "message": "Updated serve applications to the RayCluster ns/llm-abcde", "lastTimestamp": event_time}
    return Observed(rayservice=rayservice, pods={}, events=[event])


def clocks(start: float):
    now = [start]
    return now, (lambda: now[0])


def test_healthy_in_the_reconcile_that_submitted_a_new_config_is_not_healthy_yet(monkeypatch):
    monkeypatch.setenv("KUBERAY_LLM_CONFIG_SETTLE", "10s")
    now, clock = clocks(100.0)
    wall = datetime.datetime(2026, 12, 1, 12, 0, 5, tzinfo=datetime.timezone.utc).timestamp()
    assessor = Assessor(clock=clock, wall=lambda: wall)
    seen = changed_config("2026-12-01T12:00:01Z", "2026-12-01T12:00:00Z")
    verdict = assessor.assess(seen)
    assert verdict.state == WAITING
    assert verdict.summary.startswith("serve config submitted to Ray at 12:00:00 UTC, no newer status from KubeRay "
                                      "yet (healthy counts after 10s) | Ready=True")
    now[0] += 9.9
    assert assessor.assess(seen).state == WAITING
    now[0] += 0.2  # KubeRay read Ray again and again and never saw the apps leave RUNNING: the change is in
    assert assessor.assess(seen).state == HEALTHY


def test_a_status_from_a_later_reconcile_is_healthy_at_once():
    seen = changed_config("2026-12-01T12:00:02Z", "2026-12-01T12:00:00Z")
    assert Assessor().assess(seen).state == HEALTHY


def test_a_single_look_long_after_the_submission_is_healthy():
    wall = datetime.datetime(2026, 12, 1, 12, 1, 0, tzinfo=datetime.timezone.utc).timestamp()
    seen = changed_config("2026-12-01T12:00:00Z", "2026-12-01T12:00:00Z")
    assert Assessor(wall=lambda: wall).assess(seen).state == HEALTHY


def test_a_submission_to_another_cluster_does_not_hold_the_active_one():
    seen = changed_config("2026-12-01T12:00:00Z", "2026-12-01T12:00:00Z")
    seen.events[0]["message"] = "Updated serve applications to the RayCluster ns/llm-fghij"
    wall = datetime.datetime(2026, 12, 1, 12, 0, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert Assessor(wall=lambda: wall).assess(seen).state == HEALTHY
