"""manifests/components/model-cache/model_cache.py, run as the fill Job and the workers' init container run it
(`python model_cache.py fill|wait` with SERVE_CONFIG and MODEL_CACHE_DIR). The Hugging Face Hub cannot be reached
from here, so `hf` is a stand-in script on PATH that records its arguments and writes a file where
`hf download --local-dir` would; everything else (parsing, markers, resuming, exit codes) is the real script."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import yaml

from hardening_helpers import COMPONENTS_DIR, REPO

SCRIPT = COMPONENTS_DIR / "model-cache" / "model_cache.py"
MARKER = ".kuberay-llm-download-complete"


def serve_config(*sources: str, builder: str = "llm_configs") -> str:
    entries = [{"model_loading_config": {"model_id": f"m{i}", "model_source": s}} for i, s in enumerate(sources)]
    args = {"llm_configs": entries} if builder == "llm_configs" else {builder: entries[0]}
    return yaml.safe_dump({"applications": [{"name": "a", "import_path": "x:y", "args": args}]})


def fake_hf(tmp_path, exit_code: int = 0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "hf-calls.txt"
    hf = bin_dir / "hf"
    hf.write_text(f"""#!{sys.executable}
import os, sys
with open({str(log)!r}, "a") as out:
    out.write(" ".join(sys.argv[1:]) + "\\n")
local_dir = sys.argv[sys.argv.index("--local-dir") + 1]
os.makedirs(local_dir, exist_ok=True)
open(os.path.join(local_dir, "config.json"), "w").write("{{}}")
sys.exit({exit_code})
""")
    hf.chmod(hf.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log


def run(mode: str, root, config: str, path_dir=None, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODEL_CACHE_DIR": str(root), "SERVE_CONFIG": config, "MODEL_CACHE_POLL_SECONDS": "0.2"}
    if path_dir:
        env["PATH"] = f"{path_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run([sys.executable, str(SCRIPT), mode], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def test_the_chart_ships_the_same_script():
    assert (REPO / "charts" / "ray-llm" / "files" / "model_cache.py").read_text() == SCRIPT.read_text()


def test_fill_downloads_each_model_under_the_mount_once_and_marks_it(tmp_path):
    root = tmp_path / "models"
    bin_dir, log = fake_hf(tmp_path)
    config = serve_config(f"{root}/org/a", f"{root}/org/a/", "org/hub-model", f"{root}/org/b")
    done = run("fill", root, config, bin_dir)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == [f"download org/a --local-dir {root}/org/a --max-workers 16",
                                            f"download org/b --local-dir {root}/org/b --max-workers 16"]
    assert (root / "org/a" / MARKER).read_text() == "org/a\n"
    again = run("fill", root, config, bin_dir)  # a retried Job: nothing downloaded twice
    assert again.returncode == 0 and len(log.read_text().splitlines()) == 2
    assert f"{root}/org/a: already complete" in again.stdout


def test_a_failed_download_writes_no_marker_and_fails_the_job(tmp_path):
    root = tmp_path / "models"
    bin_dir, _ = fake_hf(tmp_path, exit_code=1)
    done = run("fill", root, serve_config(f"{root}/org/a"), bin_dir)
    assert done.returncode == 1
    assert not (root / "org/a" / MARKER).exists()


def test_the_dp_and_pd_builders_configs_are_read_too(tmp_path):
    root = tmp_path / "models"
    bin_dir, log = fake_hf(tmp_path)
    for builder in ("llm_config", "prefill_config"):
        assert run("fill", root, serve_config(f"{root}/org/{builder}", builder=builder), bin_dir).returncode == 0
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["org/llm_config", "org/prefill_config"]


def test_nothing_under_the_mount_is_an_error_with_the_fix(tmp_path):
    done = run("fill", "/models", serve_config("unsloth/Meta-Llama-3.1-8B-Instruct"))
    assert done.returncode == 1
    assert done.stderr.strip() == ("no model_source of the serve config lies under /models: set model_source: "
                                   "/models/<org>/<name> (the Hugging Face repo id below the mount) in the serve config")
    assert run("verify", "/models", "").returncode == 2


def test_wait_returns_once_the_job_has_marked_every_model(tmp_path):
    root = tmp_path / "models"
    config = serve_config(f"{root}/org/a")
    (root / "org/a").mkdir(parents=True)

    def finish_later():
        time.sleep(1)
        (root / "org/a" / MARKER).write_text("org/a\n")

    threading.Thread(target=finish_later).start()
    started = time.monotonic()
    done = run("wait", root, config, timeout=60)
    assert done.returncode == 0 and "model cache complete" in done.stdout
    assert "waiting for the model-cache-fill Job to finish" in done.stdout
    assert time.monotonic() - started < 20
