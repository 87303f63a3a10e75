"""`kuberay-llm local` without starting anything: serve-config localization, status verdicts, the wait, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kuberay_llm.errors import UserError
from kuberay_llm.local.serve_config import localize, serve_config_of
from kuberay_llm.local.serve_status import FAILED, READY, WAITING, Verdict, verdict, wait_for_applications
from kuberay_llm.render import Rendered, overlay_names, render_overlay

MODEL = "/models/tiny"
KV = 2**28


def local(overlay: str) -> tuple[dict, dict, list[str]]:
    _, original = serve_config_of(render_overlay(overlay))
    config, changes = localize(original, model_path=MODEL, kv_cache_bytes=KV)
    return original, config, [str(c) for c in changes]


def builder(overlay: str) -> str:
    _, original = serve_config_of(render_overlay(overlay))
    return original["applications"][0]["import_path"]


LOCAL_BUILDER = "ray.serve.llm:build_openai_app"


@pytest.mark.parametrize("overlay", overlay_names())
def test_every_overlay_keeps_names_routes_model_ids_and_runtime_env(overlay):
    if builder(overlay) != LOCAL_BUILDER:
        # data-parallel and prefill/decode builders: refused by name with the reason, not half-run
        with pytest.raises(UserError, match=rf"import_path {builder(overlay)} does not run locally: "
                                            r"(P/D moves the KV cache over NIXL|data-parallel attention)"):
            local(overlay)
        return
    original, config, _ = local(overlay)
    assert [(a["name"], a.get("route_prefix")) for a in config["applications"]] == \
        [(a["name"], a.get("route_prefix")) for a in original["applications"]]
    for before, after in zip(original["applications"], config["applications"]):
        for b, a in zip(before["args"]["llm_configs"], after["args"]["llm_configs"]):
            assert a["model_loading_config"]["model_id"] == b["model_loading_config"]["model_id"]
            assert a["model_loading_config"]["model_source"] == MODEL
            assert a.get("runtime_env") == b.get("runtime_env")
            assert a["accelerator_config"] == {"kind": "cpu"} and "accelerator_type" not in a
            kept = {k: v for k, v in b.get("engine_kwargs", {}).items()
                    if k not in ("tensor_parallel_size", "pipeline_parallel_size", "quantization", "kv_cache_dtype")}
            assert kept.items() <= a["engine_kwargs"].items()
        assert after["args"]["ingress_deployment_config"]["ray_actor_options"]["num_cpus"] == 0


def test_large_tier_replacements_are_listed_and_reasoning_parser_kept():
    _, config, changes = local("large")
    engine = config["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]
    assert engine["tensor_parallel_size"] == 1 and engine["pipeline_parallel_size"] == 1
    assert engine["kv_cache_memory_bytes"] == KV
    assert engine["reasoning_parser"] == "deepseek_r1"
    assert engine["gpu_memory_utilization"] == 0.92  # vLLM's CPU worker ignores it once the KV cache is capped
    assert "llm_app: llm_configs[0].engine_kwargs.tensor_parallel_size: 8 -> 1  (one CPU device)" in changes
    assert "llm_app: llm_configs[0].accelerator_type: 'H100' -> (removed)  (no GPU here)" in changes
    assert any(c.startswith("llm_app: llm_configs[0].model_loading_config.model_source: 'deepseek-ai/DeepSeek-R1' -> ")
               for c in changes)


def test_small_tier_autoscaling_is_capped_at_one_replica():
    _, config, changes = local("small")
    autoscaling = config["applications"][0]["args"]["llm_configs"][0]["deployment_config"]["autoscaling_config"]
    assert autoscaling["max_replicas"] == 1 and autoscaling["target_ongoing_requests"] == 32
    assert "llm_app: llm_configs[0].deployment_config.autoscaling_config.max_replicas: 4 -> 1  " \
           "(one replica fits on 2 cores)" in changes


def test_local_cpu_overlay_keeps_its_own_kv_cache_setting():
    _, config, changes = local("local-cpu")
    llm = config["applications"][0]["args"]["llm_configs"][0]
    assert "kv_cache_memory_bytes" not in llm["engine_kwargs"]  # VLLM_CPU_KVCACHE_SPACE in runtime_env caps it
    assert llm["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # model source, loopback host and eager mode for the tiny model: the overlay is already made for CPU
    _, original = serve_config_of(render_overlay("local-cpu"))
    assert [c.where for c in localize(original, model_path=MODEL, kv_cache_bytes=KV)[1]] == [
        "http_options.host", "llm_app: llm_configs[0].model_loading_config.model_source",
        "llm_app: llm_configs[0].engine_kwargs.enforce_eager"]
    assert len(changes) == 3


def test_the_tiny_model_runs_eager_unless_the_overlay_says_otherwise():
    config = {"applications": [{"name": "a", "import_path": "ray.serve.llm:build_openai_app", "args": {"llm_configs": [
        {"model_loading_config": {"model_id": "m"}, "engine_kwargs": {}},
        {"model_loading_config": {"model_id": "n"}, "engine_kwargs": {"enforce_eager": False}}]}}]}
    out, changes = localize(config, model_path=MODEL, kv_cache_bytes=KV)
    first, second = out["applications"][0]["args"]["llm_configs"]
    assert first["engine_kwargs"]["enforce_eager"] is True and second["engine_kwargs"]["enforce_eager"] is False
    assert [c.where for c in changes if c.where.endswith("enforce_eager")] == ["a: llm_configs[0].engine_kwargs.enforce_eager"]


def test_non_llm_application_is_refused():
    config = {"applications": [{"name": "web", "import_path": "my.module:app"}]}
    with pytest.raises(UserError, match="application web: import_path 'my.module:app' cannot run locally"):
        localize(config, model_path=MODEL, kv_cache_bytes=KV)


def test_rendered_without_rayservice_is_a_user_error():
    with pytest.raises(UserError, match="x.yaml: expected one RayService, found 0"):
        serve_config_of(Rendered(source="x.yaml", objects=[{"kind": "ConfigMap"}]))


def app(status="RUNNING", message="", **deployments):
    return {"status": status, "message": message,
            "deployments": {name: {"status": s, "message": ""} for name, s in deployments.items()}}


def test_verdict_ready_only_when_running_and_every_deployment_healthy():
    assert verdict({"llm_app": app(OpenAiIngress="HEALTHY", LLMServer="HEALTHY")}, ["llm_app"]).state == READY
    waiting = verdict({"llm_app": app("DEPLOYING", OpenAiIngress="HEALTHY", LLMServer="UPDATING")}, ["llm_app"])
    assert waiting == Verdict(WAITING, "llm_app: DEPLOYING (LLMServer=UPDATING)")
    assert verdict({}, ["llm_app"]).message == "llm_app: not created yet"


def test_unhealthy_fails_only_after_the_same_grace_as_wait(monkeypatch):
    """One rule set with `kuberay-llm wait` (harness/health.py): Serve restarts an unhealthy replica, so
    UNHEALTHY is a failure only once it lasts KUBERAY_LLM_UNHEALTHY_GRACE."""
    from kuberay_llm.harness.health import Assessor

    monkeypatch.setenv("KUBERAY_LLM_UNHEALTHY_GRACE", "30s")
    now = [0.0]
    assessor = Assessor(clock=lambda: now[0])
    unhealthy = {"llm_app": app(LLMServer="UNHEALTHY")}
    assert verdict(unhealthy, ["llm_app"], assessor).state == WAITING
    now[0] = 31.0
    failed = verdict(unhealthy, ["llm_app"], assessor)
    assert failed.state == FAILED and failed.message.startswith("application llm_app UNHEALTHY for 30s: LLMServer")


def test_verdict_reads_rayservice_status_spelling_too():
    status = {"llm_app": {"status": "RUNNING", "serveDeploymentStatuses": {"LLMServer": {"status": "HEALTHY"}}}}
    assert verdict(status, ["llm_app"]).state == READY


def test_wait_fails_fast_on_deploy_failed_with_ray_s_message():
    statuses = iter([{"llm_app": app("DEPLOYING", LLMServer="UPDATING")},
                     {"llm_app": app("DEPLOY_FAILED", "ValueError: Unknown engine argument: bogus",
                                     LLMServer="DEPLOY_FAILED")}])
    sleeps = []
    with pytest.raises(UserError, match="application llm_app is DEPLOY_FAILED: ValueError: Unknown engine argument: bogus"):
        wait_for_applications(lambda: next(statuses), ["llm_app"], timeout_s=600, sleep=sleeps.append)
    assert sleeps == [2.0]  # one poll interval, not the whole timeout


def test_wait_gives_up_at_the_deadline_naming_what_is_pending():
    now = iter(range(0, 100, 10))
    with pytest.raises(UserError, match=r"not ready after 30s: llm_app: DEPLOYING \(LLMServer=UPDATING\)"):
        wait_for_applications(lambda: {"llm_app": app("DEPLOYING", LLMServer="UPDATING")}, ["llm_app"],
                              timeout_s=30, clock=lambda: next(now), sleep=lambda s: None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "local", *args], capture_output=True, text=True,
                          timeout=120)


def test_unknown_overlay_is_one_line_error_without_traceback():
    proc = cli("no-such-overlay")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no-such-overlay: not an overlay") and "Traceback" not in proc.stderr


def test_help_shows_examples():
    proc = cli("--help")
    assert proc.returncode == 0 and "kuberay-llm local --stop" in proc.stdout
