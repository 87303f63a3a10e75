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
