"""Fill the model cache once, and make workers wait for it.

`python model_cache.py fill` (the model-cache-fill Job) downloads every model whose serve-config model_source is
a directory under MODEL_CACHE_DIR (`/models/<org>/<name>` is the Hugging Face repo `<org>/<name>`) with
`hf download --local-dir` (parallel, resumable: a retried Job continues where it stopped), then writes a marker.
`python model_cache.py wait` (the workers' init container) returns once every marker exists, so vLLM never
starts on a half-written directory. Both read the serve config from SERVE_CONFIG, the same serveConfigV2 the
RayService deploys (kustomize copies it), so the Job downloads exactly what the replicas load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml

MARKER = ".kuberay-llm-download-complete"
WAIT_SECONDS = float(os.environ.get("MODEL_CACHE_POLL_SECONDS", "15"))  # how often `wait` looks


def model_dirs(serve_config: str, root: str) -> list[str]:
    """model_source of every llm_config that lies under `root`, in order, once each."""
    prefix = root.rstrip("/") + "/"
    config = yaml.safe_load(serve_config) or {}
    found = []
    for app in config.get("applications") or []:
        args = (app or {}).get("args") or {}
        # build_openai_app's llm_configs, build_dp_openai_app's llm_config, build_pd_openai_app's two configs
        entries = list(args.get("llm_configs") or []) + [args.get(k) for k in ("llm_config", "prefill_config",
                                                                                 "decode_config")]
        for llm in entries:
            source = ((llm or {}).get("model_loading_config") or {}).get("model_source") if isinstance(llm, dict) else None
            if isinstance(source, str) and source.startswith(prefix) and source.rstrip("/") != prefix.rstrip("/"):
                found.append(source.rstrip("/"))
    return list(dict.fromkeys(found))


def repo_id(directory: str, root: str) -> str:
    return directory[len(root.rstrip("/")) + 1:]


def fill(dirs: list[str], root: str) -> None:
    workers = os.environ.get("HF_MAX_WORKERS", "16")
    for directory in dirs:
        marker = os.path.join(directory, MARKER)
        if os.path.exists(marker):
            print(f"{directory}: already complete", flush=True)
            continue
        repo = repo_id(directory, root)
        command = ["hf", "download", repo, "--local-dir", directory, "--max-workers", workers]
        if os.environ.get("MODEL_REVISION"):
            command += ["--revision", os.environ["MODEL_REVISION"]]
        print("+ " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
        with open(marker, "w") as out:
            out.write(repo + "\n")
        print(f"{directory}: complete", flush=True)


def wait(dirs: list[str]) -> None:
    started = time.monotonic()
    while True:
        missing = [d for d in dirs if not os.path.exists(os.path.join(d, MARKER))]
        if not missing:
            print("model cache complete: " + ", ".join(dirs), flush=True)
            return
        print(f"{time.monotonic() - started:.0f}s: waiting for the model-cache-fill Job to finish "
              f"{', '.join(missing)}", flush=True)
        time.sleep(WAIT_SECONDS)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("fill", "wait"):
        print("usage: model_cache.py fill|wait (reads SERVE_CONFIG and MODEL_CACHE_DIR)", file=sys.stderr)
        return 2
    root = os.environ.get("MODEL_CACHE_DIR", "/models")
    dirs = model_dirs(os.environ.get("SERVE_CONFIG", ""), root)
    if not dirs:
        print(f"no model_source of the serve config lies under {root}: set model_source: {root}/<org>/<name> "
              "(the Hugging Face repo id below the mount) in the serve config", file=sys.stderr)
        return 1
    if argv[1] == "fill":
        fill(dirs, root)
    else:
        wait(dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
