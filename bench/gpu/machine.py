"""What the benchmarks record about the machine, and the GPU-is-free check they run between points."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time


def _run(cmd: list[str], timeout: int = 30) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"<{e!r}>"


def gpu_memory_used_mib() -> int | None:
    out = _run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    try:
        return int(out.splitlines()[0])
    except (ValueError, IndexError):
        return None


def gpu_apps() -> list[str]:
    out = _run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"])
    return [x.strip() for x in out.splitlines() if x.strip() and not x.startswith("<")]


def wait_gpu_free(limit: float = 90, threshold_mib: int = 1500, kill_after: float = 30) -> dict:
    """Wait until no process holds the GPU; past kill_after seconds, SIGKILL the PIDs nvidia-smi lists (an
    engine core that outlived its server)."""
    t, killed = time.time(), []
    while True:
        used, apps = gpu_memory_used_mib(), gpu_apps()
        if used is None or (used < threshold_mib and not apps):
            return {"used_mib": used, "waited_s": round(time.time() - t, 1), **({"killed": killed} if killed else {})}
        if time.time() - t > kill_after:
            for app in apps:
                try:
                    pid = int(app.split(",")[0])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
        if time.time() - t > limit:
            return {"used_mib": used, "apps": apps, "waited_s": round(time.time() - t, 1), "warning": "GPU not free"}
        time.sleep(1)


def _version(module: str) -> str | None:
    code = f"import {module}; print({module}.__version__)"
    out = _run([sys.executable, "-c", code], timeout=120)
    return out.splitlines()[-1] if out and not out.startswith("<") else None


def environment() -> dict:
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    smi = "" if smi.startswith("<") else smi
    name, driver, total = ([x.strip() for x in smi.splitlines()[0].split(",")] + [None] * 3)[:3] if smi else (None,) * 3
    cuda = _run([sys.executable, "-c", "import torch; print(torch.version.cuda)"], timeout=120)
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gpu": name, "gpu_count": len(smi.splitlines()) if smi else 0, "driver": driver, "nvidia_smi_total": total,
        "cuda_runtime": cuda.splitlines()[-1] if cuda else None,
        "torch": _version("torch"), "vllm": _version("vllm"), "transformers": _version("transformers"),
        "ray": _version("ray"), "python": platform.python_version(), "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
