"""Helpers for tests that edit broken copies of overlays (tests/conftest.py's overlay_copy fixture)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def edit_yaml(path: Path, change) -> None:
    """Load a YAML file, let `change(data)` modify it, write it back."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def llm_config(overlay: Path) -> tuple[Path, callable]:
    """(serve-config.yaml path, accessor of its first llm_config) of an overlay copy."""
    return overlay / "serve-config.yaml", lambda data: data["applications"][0]["args"]["llm_configs"][0]


def validate(capsys, *args) -> tuple[int, str]:
    """`kuberay-llm validate ARGS` in this process: (exit code, stdout + stderr)."""
    from kuberay_llm import cli

    code = cli.main(["validate", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out + out.err
