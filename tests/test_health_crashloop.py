"""wait's CrashLoopBackOff rule: the first restart of a container is given its retry, the next one fails.

Seen on the local cluster (tests/controlplane/test_localcluster.py): a Ray worker's raylet gives its dashboard
agent 15 s to start (Ray 2.60) and aborts on a busy node; the container restarts once and joins."""

from __future__ import annotations

import pytest

from kuberay_llm.harness.health import FAILED, WAITING, Assessor, Observed
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
