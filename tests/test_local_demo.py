"""`kuberay-llm local` for real: Ray 2.60 + vLLM's CPU build on this machine (each test starts its own Ray head).

These are the `make demo` runs inside `make test`; they need `make setup-local` (part of `make setup`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from kuberay_llm import settings, smoke, toolchain
from kuberay_llm.harness import startup
from kuberay_llm.local import ray_head, tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
WORK = toolchain.work_dir() / "local"
MODEL_ID = "qwen2.5-0.5b-instruct"  # overlays/local-cpu


def kuberay_llm(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "local", *args], capture_output=True, text=True,
                          timeout=timeout)
    print(proc.stdout, proc.stderr, sep="\n")  # shown by pytest when the test fails
    return proc


def stack_processes() -> list[str]:
    """Processes of a local stack still alive: every one of them has TMPDIR in the project's work dir."""
    tmp = str(WORK / "tmp")
    left = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get("TMPDIR") == tmp:
                left.append(f"{proc.pid} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return left


@pytest.fixture(autouse=True)
def nothing_left_behind():
    assert stack_processes() == [], "a local stack is already running: `kuberay-llm local --stop`"
    yield
    assert stack_processes() == []
    for port in (settings.dashboard_port(), ray_head.SERVE_PORT, settings.gcs_port()):
        assert not ray_head.port_in_use(port), f"port {port} still bound"
    assert not ray_head.state_file(WORK).exists()


def test_a_reasoning_tier_passes_the_smoke_test_through_its_reasoning_field():
    """overlays/large keeps reasoning_parser deepseek_r1 on the tiny model: vLLM 0.29 puts the text before
    `</think>` into `reasoning`, so a random model's reply is mostly or wholly reasoning; the smoke test must
    read it there (it once read only `reasoning_content` and failed such streams as "produced no tokens")."""
    proc = kuberay_llm("large")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    model_id = yaml.safe_load((toolchain.OVERLAYS_DIR / "large" / "serve-config.yaml").read_text())[
        "applications"][0]["args"]["llm_configs"][0]["model_loading_config"]["model_id"]
    stream = out.split("stream (", 1)[1]
    reasoning = stream.split("\n  reasoning: ", 1)[1].split("\n", 1)[0]
    assert reasoning and reasoning != "(none)", out
    assert f"smoke test {model_id} passed" in out
    assert "stopped: Serve shut down, Ray head and all its processes gone" in out


def test_demo_serves_local_cpu_and_keep_leaves_it_serving_until_stop():
    """`make demo`'s overlay, kept: rendered, the tiny model swapped in, RUNNING, smoke-tested, then serving on
    :8000 until `--stop`. (The stop-at-the-end path of a run without --keep is every other test here; the
    fixture checks that nothing is left behind after each.)"""
    import openai

    proc = kuberay_llm("local-cpu", "--keep")
    try:
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "overlays/local-cpu: RayService/local-cpu-llm, applications: llm_app" in out
        assert "model_source: 'Qwen/Qwen2.5-0.5B-Instruct' -> " in out
        assert "llm_app: RUNNING" in out
        assert f"models: {MODEL_ID}\n" in out
        assert f"smoke test {MODEL_ID} passed: chat " in out
        assert f"curl -s http://127.0.0.1:8000/v1/chat/completions" in out and f'"model": "{MODEL_ID}"' in out
        assert stack_processes() != []
        client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="local", max_retries=0, timeout=120)
        chat = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hello"}],
                                              max_tokens=8, extra_body={"min_tokens": 8})
        assert chat.model == MODEL_ID and chat.usage.completion_tokens == 8 and chat.choices[0].message.content
        # what `status` shows of a starting replica, read from this Ray's dashboard log API: the whole start here
        line = startup.replica_startup(f"http://127.0.0.1:{settings.dashboard_port()}")
        assert line and line.startswith("vLLM 0.29.0: engine configured, loading weights, weights loaded"), line
        assert "engine ready" in line and "torch.compile" not in line and "now:" not in line, line  # eager
    finally:
        stop = kuberay_llm("--stop", timeout=180)
    assert stop.returncode == 0 and stop.stdout.startswith("stopped the local instance")
    assert kuberay_llm("--stop", timeout=60).stdout.strip() == "no kept local instance"


def test_deploy_failed_fails_fast_with_ray_s_message(tmp_path: Path):
    """An engine arg vLLM does not know: Ray marks the application DEPLOY_FAILED; we stop at once and say why."""
    rendered = yaml.safe_load_all(subprocess.run([str(toolchain.tool("kustomize")), "build",
                                                  str(toolchain.OVERLAYS_DIR / "local-cpu")],
                                                 capture_output=True, text=True, check=True, timeout=120).stdout)
    service = next(o for o in rendered if o and o["kind"] == "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    config["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]["tensor_paralel_size"] = 1
    service["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    (tmp_path / "rayservice.yaml").write_text(yaml.safe_dump(service))
    (tmp_path / "kustomization.yaml").write_text(textwrap.dedent("""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [rayservice.yaml]
        """))
    proc = kuberay_llm(str(tmp_path), timeout=600)
    assert proc.returncode == 1
    assert "error: application llm_app is DEPLOY_FAILED: " in proc.stderr
    assert "tensor_paralel_size" in proc.stderr and "Traceback" not in proc.stderr.split("DEPLOY_FAILED")[0]


def overlay_model_id(overlay: str) -> str:
    return yaml.safe_load((toolchain.OVERLAYS_DIR / overlay / "serve-config.yaml").read_text())[
        "applications"][0]["args"]["llm_configs"][0]["model_loading_config"]["model_id"]


def test_hybrid_reasoning_switches_thinking_off_per_request():
    """overlays/hybrid-reasoning on a tiny Qwen3 with Qwen3's enable_thinking template and vLLM's qwen3 parser:
    with thinking on the reply is reasoning (the random model never closes </think>), with thinking off it has
    none and an answer in content."""
    proc = kuberay_llm("hybrid-reasoning")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    model_id = overlay_model_id("hybrid-reasoning")
    assert "model_source: 'Qwen/Qwen3-32B' -> " in out and "(no model hub here: a tiny random-weight Qwen3 " in out
    assert f"== smoke test {model_id}: hybrid (reasoning_parser qwen3, chat_template_kwargs.enable_thinking" in out
    assert 'ok hybrid: thinking on (chat_template_kwargs {"enable_thinking": true}) carries reasoning: reasoning ' in out
    assert ('ok hybrid: thinking off (chat_template_kwargs {"enable_thinking": false}) carries no reasoning and an '
            "answer: reasoning none, content ") in out
    assert f"smoke test {model_id} passed" in out and "FAILED" not in out


def test_vision_answers_a_chat_completion_with_an_image():
    """overlays/vision on a tiny Qwen2.5-VL (vision tower, Qwen2-VL image processor): the smoke's PNG goes through
    Ray Serve LLM into vLLM's multimodal processor and vision encoder, and the model answers."""
    proc = kuberay_llm("vision")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    model_id = overlay_model_id("vision")
    assert "(no model hub here: a tiny random-weight Qwen2.5-VL with a vision tower generated offline)" in out
    # 56x56 pixels are (56/14)^2 patches merged 2x2: 4 <|image_pad|> tokens between <|vision_start|> and <|vision_end|>
    image_tokens = (smoke.IMAGE_SIDE // tiny_model.PATCH_SIZE) ** 2 // tiny_model.SPATIAL_MERGE_SIZE ** 2 + 2
    assert "ok vision: chat completion with a 56x56 PNG (image_url data URL) answers, its prompt longer than " \
           f"without the image: " in out and f" prompt tokens (+{image_tokens} for the image), " in out
    assert f"smoke test {model_id} passed" in out and "FAILED" not in out
