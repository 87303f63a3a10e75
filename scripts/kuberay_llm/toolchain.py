"""Paths of the repository and of the pinned tools that `make tools` builds into ./bin.

The Makefile is the one place a version is pinned (`KUSTOMIZE_VERSION ?= v5.8.1`); this module reads the
pins from it so the CLI runs the very binaries `make` built. `KUBERAY_LLM_BIN` moves ./bin (kuberay_llm/settings.py),
and `KUSTOMIZE`, `HELM`, `KUBECONFORM` point at other binaries.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path

from kuberay_llm import settings
from kuberay_llm.errors import ToolError, ToolMissing

REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAYS_DIR = REPO_ROOT / "overlays"
MANIFESTS_DIR = REPO_ROOT / "manifests"
CHARTS_DIR = REPO_ROOT / "charts"

_PIN = re.compile(r"^([A-Z_]+_VERSION) \?= (\S+)\s*$", re.M)


@functools.cache
def pins() -> dict[str, str]:
    """The `*_VERSION ?= x` pins at the top of the Makefile."""
    makefile = REPO_ROOT / "Makefile"
    try:
        return dict(_PIN.findall(makefile.read_text()))
    except OSError as exc:  # pragma: no cover - the package always ships beside its Makefile
        raise ToolError(f"{makefile}: cannot read the version pins ({exc.strerror})") from None


def work_dir() -> Path:
    """./.work, or KUBERAY_LLM_WORK."""
    return settings.work_dir(REPO_ROOT / ".work")


def bin_dir() -> Path:
    return settings.bin_dir(REPO_ROOT / "bin")


def tool(name: str) -> Path:
    """The pinned binary `name` (kustomize, helm, kubeconform, ray-operator, ...) as `make` built it."""
    override = os.environ.get(name.upper().replace("-", "_"))
    if override:
        return Path(override)
    version_key = {"ray-operator": "KUBERAY_VERSION"}.get(name, name.upper().replace("-", "_") + "_VERSION")
    version = pins().get(version_key)
    if version is None:
        raise ToolError(f"Makefile: no {version_key} pin for tool {name}")
    path = bin_dir() / f"{name}-{version}"
    if not path.exists():
        raise ToolMissing(f"{path} is missing: run `make tools` (builds the pinned {name} {version} into ./bin)")
    return path


def schemas_dir() -> Path:
    path = bin_dir() / "schemas"
    if not (path / "index.json").exists():
        raise ToolMissing(f"{path} has no schemas: run `make schemas` (converts the pinned Kubernetes/KubeRay schemas)")
    return path


def run_tool(args: list[str | os.PathLike], *, what: str, stdin: str | None = None,
             timeout: float | None = None, cwd: Path | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run a pinned tool; return stdout. An exit code outside `ok_codes` becomes a ToolError naming `what`
    and the tool's stderr. `timeout`: KUBERAY_LLM_TOOL_TIMEOUT unless given."""
    timeout = settings.tool_timeout() if timeout is None else timeout
    try:
        proc = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what}: {Path(str(args[0])).name} did not finish in {timeout:.0f}s "
                        "(raise KUBERAY_LLM_TOOL_TIMEOUT)") from None
    except OSError as exc:
        raise ToolError(f"{what}: cannot run {args[0]}: {exc.strerror}") from None
    if proc.returncode not in ok_codes:
        detail = (proc.stderr or proc.stdout).strip()
        raise ToolError(f"{what}: {Path(str(args[0])).name} failed: {detail}")
    return proc.stdout
