"""Shared fixtures: broken copies of real overlays, built in a temp dir next to a copy of manifests/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

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


def edit_yaml(path: Path, change) -> None:
    """Load a YAML file, let `change(data)` modify it, write it back."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def llm_config(overlay: Path) -> tuple[Path, callable]:
    """(serve-config.yaml path, accessor of its first llm_config) of an overlay copy."""
    return overlay / "serve-config.yaml", lambda data: data["applications"][0]["args"]["llm_configs"][0]
