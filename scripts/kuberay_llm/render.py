"""Render an overlay with the pinned kustomize, and read the rendered objects."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kuberay_llm import toolchain
from kuberay_llm.errors import ToolError, UserError
from kuberay_llm.group_guards import failed_guard_hint


@dataclass
class Rendered:
    """The objects of one source: an overlay (rendered by kustomize) or a plain manifest file."""

    source: str  # what error messages call it: `overlays/medium`, `rendered.yaml`, `-`
    objects: list[dict] = field(default_factory=list)
    text: str = ""
    # where a user changes the Ray image of this source (findings' fix text)
    image_setting: str = "manifests/base/kustomization.yaml images (newTag)"


def overlay_names() -> list[str]:
    """Every overlay in the repository, sorted."""
    return sorted(p.parent.name for p in toolchain.OVERLAYS_DIR.glob("*/kustomization.yaml"))


def resolve_overlay(name_or_path: str) -> Path:
    """`small`, `overlays/small` or any directory with a kustomization.yaml."""
    path = Path(name_or_path)
    for candidate in (path, toolchain.OVERLAYS_DIR / name_or_path):
        if (candidate / "kustomization.yaml").is_file():
            return candidate.resolve()
    known = ", ".join(overlay_names())
    raise UserError(f"{name_or_path}: not an overlay (no kustomization.yaml there); known overlays: {known}")


def display_name(path: Path) -> str:
    """`overlays/medium` for a path inside the repository, the path as given otherwise."""
    try:
        return str(path.resolve().relative_to(toolchain.REPO_ROOT))
    except ValueError:
        return str(path)


def kustomize_build(overlay: Path) -> str:
    try:
        return toolchain.run_tool([toolchain.tool("kustomize"), "build", overlay],
                                  what=display_name(overlay))
    except ToolError as err:
        hint = failed_guard_hint(str(err), Path(overlay), display_name)
        if hint is None:
            raise
        raise ToolError(f"{err}; {hint}") from None


def parse_objects(text: str, source: str) -> list[dict]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML: {exc}") from None
    objects = [d for d in docs if d is not None]
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or "kind" not in obj:
            raise UserError(f"{source}: document {i + 1} is not a Kubernetes object (no kind)")
    return objects


def decode(data: bytes, source: str) -> str:
    """Manifest bytes as text: UTF-8 (YAML's encoding for Kubernetes), or a UserError saying where it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); save the "
                        "manifest as UTF-8") from None


def render_overlay(name_or_path: str) -> Rendered:
    overlay = resolve_overlay(name_or_path)
    source = display_name(overlay)
    text = kustomize_build(overlay)
    return Rendered(source=source, objects=parse_objects(text, source), text=text)


def load_source(arg: str) -> Rendered:
    """An overlay directory, a manifest file, or `-` for stdin."""
    if arg == "-":
        text = decode(sys.stdin.buffer.read(), "-")
        return Rendered(source="-", objects=parse_objects(text, "-"), text=text, image_setting="the image field")
    path = Path(arg)
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{display_name(path)}: cannot read: {exc.strerror}") from None
        text = decode(data, display_name(path))
        return Rendered(source=display_name(path), objects=parse_objects(text, display_name(path)), text=text,
                        image_setting="the image field")
    return render_overlay(arg)


def object_name(obj: dict) -> str:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind')}/{metadata.get('name', '?')}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overlay", help="overlay name (small, medium, ...) or directory")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render_overlay(args.overlay).text)
    return 0
