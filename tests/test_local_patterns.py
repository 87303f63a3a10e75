"""`kuberay-llm local --component`: Serve's opt-in components on a local Ray head, and what does not run on CPU.

The slow test runs components/prefix-routing for real (Ray 2.60, vLLM's CPU build, two tiny replicas) and reads
from Ray's own output that the router took effect: each prompt's requests in one replica's access log, and the
router's PrefixTreeActor alive in Ray's actor table. The others check the usage errors and the serve config
that `kuberay-llm local` would submit, with nothing started.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from kuberay_llm import toolchain
from kuberay_llm.local import components
from kuberay_llm.local.serve_config import localize
from kuberay_llm.render import render_overlay

WORK = toolchain.work_dir() / "local"
MODEL, KV = "/models/tiny", 256 * 2**20


def kuberay_llm(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "local", *args], capture_output=True, text=True,
                          timeout=timeout)
    print(proc.stdout, proc.stderr, sep="\n")  # shown by pytest when the test fails
    return proc


def rendered_with(overlay: str, *names: str, tmp_path):
    base = render_overlay(overlay)
    rendered, notes = components.render_with(overlay, list(names), tmp_path, base)
    return rendered, notes


def serve_config(rendered) -> dict:
    service = next(o for o in rendered.objects if o["kind"] == "RayService")
    return yaml.safe_load(service["spec"]["serveConfigV2"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_prefix_routing_runs_locally_and_the_router_takes_effect():
    from test_local_demo import stack_processes

    assert stack_processes() == [], "a local stack is already running: `kuberay-llm local --stop`"
    proc = kuberay_llm("local-cpu", "--component", "prefix-routing")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "overlays/local-cpu + components/prefix-routing: RayService/local-cpu-llm" in out
    assert "deployment_config.autoscaling_config.max_replicas: 1 -> 2" in out
    # Ray's replica access logs: each prompt's 4 requests on a single replica. Serve's default router (power of
    # two choices, ties broken at random) keeps 4 sequential requests together 1 time in 8 per prompt, both
    # prompts 1 time in 64 (make bench-local prints that probe for the default too).
    served = re.findall(r"request router PrefixCacheAffinityRouter: prompt (\w): its 4 requests served by replica "
                        r"(\w+) \(Ray's replica access logs\)", out)
    assert [key for key, _ in served] == ["a", "b"], out
    assert re.search(r"its PrefixTreeActor is ALIVE in Ray namespace serve::llm_app::LLMServer", out), out
    assert "smoke test qwen2.5-0.5b-instruct passed" in out
    assert "stopped: Serve shut down, Ray head and all its processes gone" in out
    assert stack_processes() == []


def test_prefix_routing_on_local_cpu_gets_the_marker_and_two_replicas(tmp_path):
    """local-cpu has no marker line: the generated overlay adds it, and the component's own replacement writes
    its request-router.txt there (not a top-level key); localize then runs two replicas."""
    rendered, notes = rendered_with("local-cpu", "prefix-routing", tmp_path=tmp_path)
    assert notes == ["overlays/local-cpu has no `request_router_config: {} # request_router_config` line: added it "
                     "to each llm_config's deployment_config in " + str(tmp_path / "overlay" / "serve-config.yaml")
                     + " (how a tier opts in)"]
    config = serve_config(rendered)
    assert "request_router_config" not in config
    router_txt = (toolchain.MANIFESTS_DIR / "components/prefix-routing/request-router.txt").read_text()
    expected = yaml.safe_load("x" + router_txt.rsplit("#", 1)[0])["x"]
    llm = config["applications"][0]["args"]["llm_configs"][0]
    assert llm["deployment_config"]["request_router_config"] == expected
    local, _ = localize(config, model_path=MODEL, kv_cache_bytes=KV)
    deployment = local["applications"][0]["args"]["llm_configs"][0]["deployment_config"]
    assert deployment["autoscaling_config"]["min_replicas"] == deployment["autoscaling_config"]["max_replicas"] == 2
    assert deployment["ray_actor_options"]["num_cpus"] == 0


def test_high_throughput_flags_reach_ray_start_and_direct_streaming_drops_the_ingress_config(tmp_path):
    rendered, notes = rendered_with("local-cpu", "high-throughput", tmp_path=tmp_path)
    assert notes == []
    env = components.head_env(rendered)
    assert env == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                   "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING": "1"}
    local, changes = localize(serve_config(rendered), model_path=MODEL, kv_cache_bytes=KV, direct_streaming=True)
    assert "ingress_deployment_config" not in local["applications"][0]["args"]
    assert any(str(c).startswith("llm_app: args.ingress_deployment_config: {'ray_actor_options': {'num_cpus': 0}} "
                                 "-> (removed)  (direct streaming makes the LLM server the ingress") for c in changes)
    assert components.head_env(render_overlay("local-cpu")) == {}


def test_a_component_without_local_effect_is_refused():
    proc = kuberay_llm("local-cpu", "--component", "hf-token", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: --component hf-token: changes only Kubernetes objects, which a local Ray "
                                   "head has none of; `kuberay-llm local` runs prefix-routing, high-throughput")


def test_an_unknown_component_is_refused():
    proc = kuberay_llm("local-cpu", "--component", "prefix-routng", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: --component prefix-routng: is not a component in manifests/components; "
                                   "`kuberay-llm local` runs prefix-routing, high-throughput")


def test_a_component_given_twice_is_refused():
    proc = kuberay_llm("local-cpu", "--component", "prefix-routing", "--component", "prefix-routing", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --component prefix-routing, prefix-routing: each component once"


@pytest.mark.parametrize("overlay, builder, why", [
    ("large-pd", "build_pd_openai_app", "P/D moves the KV cache over NIXL"),
    ("large-dp-ep", "build_dp_openai_app", "data-parallel attention with expert parallelism"),
])
def test_pd_and_dp_builders_say_why_they_do_not_run_on_cpu(overlay, builder, why):
    proc = kuberay_llm(overlay, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: application ")
    assert f"import_path ray.serve.llm:{builder} does not run locally: {why}" in proc.stderr
    assert "Traceback" not in proc.stderr
