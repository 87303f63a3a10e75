"""Shared fixtures: broken copies of real overlays, built in a temp dir next to a copy of manifests/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
