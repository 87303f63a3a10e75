"""Shared fixtures (broken copies of real overlays, built in a temp dir next to a copy of manifests/; one control
plane for the hardening suites), the `fast` marker, the fast tests' time budget and this run's kustomize cache."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import fast_budget

REPO = Path(__file__).resolve().parents[1]

# The tests `make test-fast` runs: every test not marked slow, controlplane or e2e (marked `fast` at collection);
# their summed time is held to fast_budget.FAST_BUDGET_S.
NOT_FAST = ("slow", "controlplane", "e2e")
_FAST = {"seconds": 0.0, "count": 0}


def pytest_configure(config):
    _cache_kustomize(config)


def _cache_kustomize(config):
    """Point KUSTOMIZE at tests/cached_kustomize.py for this run (and every subprocess it starts), unless the
    caller chose a kustomize or KUBERAY_LLM_TEST_KUSTOMIZE_CACHE=0; xdist workers share the controller's cache."""
    if os.environ.get("KUBERAY_LLM_TEST_KUSTOMIZE_CACHE") == "0":
        return
    if os.environ.get("KUBERAY_LLM_TEST_KUSTOMIZE_CACHE") and os.environ.get("KUSTOMIZE"):
        return  # set by the controller of this run
    if os.environ.get("KUSTOMIZE"):
        return
    from kuberay_llm import toolchain
    from kuberay_llm.errors import ToolMissing

    try:
        real = toolchain.tool("kustomize")
    except ToolMissing:
        return  # the tests that need it fail naming `make tools`
    cache = Path(tempfile.mkdtemp(prefix="kuberay-llm-kustomize-"))
    launcher = cache / "bin" / real.name  # the same name in error messages as the real binary
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "{REPO / "tests" / "cached_kustomize.py"}" "$@"\n')
    launcher.chmod(0o755)
    os.environ.update(KUSTOMIZE=str(launcher), KUBERAY_LLM_TEST_KUSTOMIZE_REAL=str(real),
                      KUBERAY_LLM_TEST_KUSTOMIZE_CACHE=str(cache / "builds"))
    config._kustomize_cache = cache


def pytest_unconfigure(config):
    cache = getattr(config, "_kustomize_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
        for name in ("KUSTOMIZE", "KUBERAY_LLM_TEST_KUSTOMIZE_REAL", "KUBERAY_LLM_TEST_KUSTOMIZE_CACHE"):
            os.environ.pop(name, None)


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
    if hasattr(config, "workerinput") or not _FAST["count"]:
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
