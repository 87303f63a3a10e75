"""What KubeRay, Ray and vLLM really wrote on a GPU, replayed through the harness's verdict rules (the ones
`wait`, `status` and `diagnose` share). The fixtures under tests/data/gpu were recorded by `make e2e-gpu`
(bench/gpu/e2e_gpu.py capture(): the RayService, its pods, the namespace's events and each container's last log
lines at the moment of the verdict) on an H100 node; each file's `provenance` says where and with what."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kuberay_llm.harness.health import FAILED, HEALTHY, WAITING, Assessor, Observed

DATA = Path(__file__).parent / "data" / "gpu"


def observed(name: str, edit=None) -> Observed:
    data = json.loads((DATA / f"{name}.json").read_text())
    if edit:
        edit(data)
    return Observed(rayservice=data["rayservice"], pods=data["pods"], events=data["events"], logs=data["logs"])


def test_the_healthy_small_tier_on_an_h100_is_healthy():
    verdict = Assessor().assess(observed("default"))
    assert verdict.state == HEALTHY
    assert "LLMServer:my-llama-3_1-8b=HEALTHY" in verdict.summary


def test_an_accelerator_type_the_gpu_is_not_fails_at_once_naming_both():
    verdict = Assessor().assess(observed("fail-accelerator"))
    assert verdict.state == FAILED
    assert verdict.summary == (
        "application llm_app (pending cluster): deployment LLMServer:my-llama-3_1-8b asks for Ray's "
        "accelerator_type:L4 and its replica cannot be scheduled: the GPU workers run on NVIDIA-H100-80GB-HBM3 nodes, "
        "which Ray names accelerator_type:H100; fix: set accelerator_type: H100 in the serve config, or remove it")


def test_without_a_known_gpu_model_it_waits_its_grace_then_fails(monkeypatch):
    """A worker group with no nodeSelector for the GPU model: an autoscaler might still add a node of that model."""
    def unselect(data):
        for pod in data["pods"].values():
            (pod["spec"].get("nodeSelector") or {}).pop("nvidia.com/gpu.product", None)
    monkeypatch.setenv("KUBERAY_LLM_UNSCHEDULABLE_GRACE", "60s")
    now = [0.0]
    assessor = Assessor(clock=lambda: now[0])
    assert assessor.assess(observed("fail-accelerator", unselect)).state == WAITING
    now[0] = 61.0
    verdict = assessor.assess(observed("fail-accelerator", unselect))
    assert verdict.state == FAILED
    assert verdict.summary.endswith("cannot be scheduled for 60s: no Ray node advertises accelerator_type:L4; fix: set "
                                    "accelerator_type to the GPU your workers have (`ray status -v` on the head lists "
                                    "accelerator_type:* resources), or remove it")


def test_the_same_status_with_the_matching_accelerator_is_not_a_failure():
    def h100(data):
        deployments = data["rayservice"]["status"]["pendingServiceStatus"]["applicationStatuses"]["llm_app"][
            "serveDeploymentStatuses"]
        for status in deployments.values():
            status["message"] = (status.get("message") or "").replace("accelerator_type:L4", "accelerator_type:H100")
    assert Assessor().assess(observed("fail-accelerator", h100)).state == WAITING
