"""Shared fixtures (broken copies of real overlays, built in a temp dir next to a copy of manifests/; one control
plane for the hardening suites), the `fast` marker, the fast tests' time budget, and each repository overlay rendered
once per run."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import fast_budget

REPO = Path(__file__).resolve().parents[1]

# The tests `make test-fast` runs: every test not marked slow, controlplane or e2e (marked `fast` at collection);
# their summed time is held to fast_budget.FAST_BUDGET_S.
NOT_FAST = ("slow", "controlplane", "e2e")
_FAST = {"seconds": 0.0, "count": 0}


@pytest.fixture(scope="session", autouse=True)
def renders_once_per_input():
    """Within one run, each overlay of the repository is built by kustomize once and each rendered text parsed
    once: render.kustomize_build keeps the output per overlay directory inside manifests/, overlays/ or deploy/
    (a copy in a temp dir, which a test may break, is always built), and render.parse_objects keeps the objects
    per text, handing out a deep copy each time (a test may change what it gets). Failures are not kept.
    KUBERAY_LLM_TEST_RENDER_CACHE=0 turns both off."""
    if os.environ.get("KUBERAY_LLM_TEST_RENDER_CACHE") == "0":
        yield
        return
    import copy

    from kuberay_llm import render, toolchain

    roots = [REPO / d for d in ("manifests", "overlays", "deploy")]
    built: dict[tuple[Path, Path], str] = {}
    parsed: dict[tuple[str, str], list[dict]] = {}
    real_build, real_parse = render.kustomize_build, render.parse_objects

    def kustomize_build(overlay):
        path = Path(overlay).resolve()
        if not any(path == r or r in path.parents for r in roots):
            return real_build(overlay)
        key = (toolchain.tool("kustomize"), path)  # raises as the real one does when the binary is missing
        if key not in built:
            built[key] = real_build(overlay)
        return built[key]

    def parse_objects(text, source):
        key = (text, source)
        if key not in parsed:
            parsed[key] = real_parse(text, source)
        return copy.deepcopy(parsed[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "kustomize_build", kustomize_build)
        mp.setattr(render, "parse_objects", parse_objects)
        yield


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects (tests/controlplane/conftest.py marks its own tests too)
def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/controlplane/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.controlplane)
        if not any(item.get_closest_marker(m) for m in NOT_FAST):
            item.add_marker(pytest.mark.fast)


def pytest_runtest_logreport(report):
    if "fast" in report.keywords:
        _FAST["seconds"] += report.duration
        _FAST["count"] += report.when == "call"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    started = os.environ.get("MAKE_TEST_STARTED", "")  # `make test`'s second pass: the time of both passes
    if started.isdigit():
        terminalreporter.write_line(f"make test: {time.time() - int(started):.0f} s in all (fast pass and this one)")
    if not _FAST["count"]:
        return
    verdict = fast_budget.verdict(_FAST["seconds"], _FAST["count"])
    terminalreporter.write_line(verdict or fast_budget.within(_FAST["seconds"], _FAST["count"]),
                                red=bool(verdict), bold=bool(verdict))


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _FAST["count"]:
        return
    if exitstatus == 0 and fast_budget.verdict(_FAST["seconds"], _FAST["count"]):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def overlay_copy(tmp_path):
    """`overlay_copy("medium")` copies manifests/ and the overlay (and the overlays it builds on) to tmp_path
    and returns the copy's directory, so a test can break one file and validate the result."""

    def make(name: str) -> Path:
        shutil.copytree(REPO / "manifests", tmp_path / "manifests", dirs_exist_ok=True)
        for overlay in (REPO / "overlays").iterdir():
            shutil.copytree(overlay, tmp_path / "overlays" / overlay.name, dirs_exist_ok=True)
        return tmp_path / "overlays" / name

    return make


@pytest.fixture(scope="session")
def hardening_plane_starting():
    """One local control plane (etcd + kube-apiserver with the KubeRay and Prometheus Operator CRDs) shared by the
    tests/test_hardening_*.py suites, started in the background at first use (a future: `.result()` waits)."""
    import concurrent.futures

    from apiserver_helpers import start_plane

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(start_plane)
    yield future
    try:
        future.result().stop()
    except RuntimeError:
        pass
    pool.shutdown()
