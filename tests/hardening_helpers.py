"""Helpers of the tests/test_hardening*.py suites: broken or extended copies of real overlays, validated in process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from overlay_helpers import REPO, edit_yaml, llm_config

COMPONENTS_DIR = REPO / "manifests" / "components"
SERVE_CONFIG_LINE = "  - ../../manifests/components/serve-config # keep last: injects serve-config.yaml\n"


def add_components(overlay: Path, *names: str) -> None:
    """List components in an overlay copy, before its serve-config line (as a user would); one the overlay lists
    already (pod-security, on by default) stays listed once."""
    path = overlay / "kustomization.yaml"
    text = path.read_text()
    lines = "".join(f"  - ../../manifests/components/{n}\n" for n in names
                    if f"  - ../../manifests/components/{n}\n" not in text)
    if SERVE_CONFIG_LINE in text:
        text = text.replace(SERVE_CONFIG_LINE, lines + SERVE_CONFIG_LINE)
    else:
        text += "components:\n" + lines if "components:" not in text else lines
    path.write_text(text)


def remove_component(overlay: Path, name: str) -> None:
    path = overlay / "kustomization.yaml"
    text = path.read_text()
    line = f"  - ../../manifests/components/{name}\n"
    assert line in text, f"{path} has no {name}"
    path.write_text(text.replace(line, ""))


def add_resource(overlay: Path, filename: str, obj: dict) -> None:
    (overlay / filename).write_text(yaml.safe_dump(obj, sort_keys=False))
    edit_yaml(overlay / "kustomization.yaml", lambda k: k.setdefault("resources", []).append(filename))


def add_json_patch(overlay: Path, filename: str, ops: list[dict], kind: str = "RayService") -> None:
    (overlay / filename).write_text(yaml.safe_dump(ops, sort_keys=False))
    edit_yaml(overlay / "kustomization.yaml",
              lambda k: k.setdefault("patches", []).append({"path": filename, "target": {"kind": kind}}))


def set_model_source(overlay: Path, source: str) -> None:
    path, cfg = llm_config(overlay)
    edit_yaml(path, lambda d: cfg(d)["model_loading_config"].update(model_source=source))


def findings(overlay_or_file: Path | str) -> list[str]:
    """`severity: text` of every finding preflight reports for an overlay directory or a manifest file."""
    from kuberay_llm import render, validate

    rendered = render.load_source(str(overlay_or_file))
    out = [f"{f.severity}: {f}" for f in validate.check_rendered(rendered)]
    path = Path(overlay_or_file)
    if path.is_dir() and path.parent.name == "overlays":  # a copy made by overlay_copy: name it as in the repo
        out = [f.replace(f"{path.parent.parent}/", "") for f in out]
    return out


def wrapper_overlay(tmp_path: Path, base: str, components: list[str], name: str = "wrapper") -> Path:
    """overlays/<base> plus components, built from a directory outside the repository (kustomize takes
    relative paths to other kustomizations)."""
    overlay = tmp_path / name
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "overlays" / base, overlay)],
        "components": [os.path.relpath(COMPONENTS_DIR / c, overlay) for c in components],
    }, sort_keys=False))
    return overlay


def kustomize(path: Path) -> subprocess.CompletedProcess:
    from kuberay_llm import toolchain

    return subprocess.run([str(toolchain.tool("kustomize")), "build", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)


def objects_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]
