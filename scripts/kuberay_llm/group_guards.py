"""JSON patches that reach a worker group by index, guarded by the group's name.

A JSON patch (RFC 6902) addresses `workerGroupSpecs/0`, never a group by name, so every patch that does first
tests `workerGroupSpecs/<i>/groupName` (manifests/base/kustomization.yaml argues the design). Here: the guard op
for generated patches, the check that a list of ops is guarded, and the hint that turns kustomize's failed test
into the patch files to fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

GROUPS = "/spec/rayClusterConfig/workerGroupSpecs"
_INDEXED = re.compile(re.escape(GROUPS) + r"/(\d+)(/|$)")
# kustomize v5.8's words for a failed `test`: a different value, or no group at that index
_FAILED_GUARD = re.compile(r"(?:testing value|is missing path:) (" + re.escape(GROUPS) + r"/(\d+)/groupName)\b")


def guard_op(index: int, group_name: str) -> dict:
    """The op that fails the build unless worker group `index` is `group_name`."""
    return {"op": "test", "path": f"{GROUPS}/{index}/groupName", "value": group_name}


def unguarded_ops(ops: list) -> list[str]:
    """The paths of index-addressed worker group ops with no guard for their group before them."""
    guarded: set[str] = set()
    missing = []
    for op in ops if isinstance(ops, list) else []:
        if not isinstance(op, dict):
            continue
        match = _INDEXED.match(str(op.get("path", "")))
        if not match:
            continue
        index = match.group(1)
        if op.get("op") == "test" and op["path"] == f"{GROUPS}/{index}/groupName" and op.get("value"):
            guarded.add(index)
        elif index not in guarded:
            missing.append(op["path"])
    return missing


def _kustomization(directory: Path) -> Path | None:
    return next((directory / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                 if (directory / n).is_file()), None)


def patches_of(directory: Path, seen: set[Path] | None = None) -> Iterator[tuple[Path, object]]:
    """(file, parsed patch) of every patch in the kustomization at `directory` and those it builds on (resources
    and components that are directories); an inline patch is reported as its kustomization file."""
    seen = set() if seen is None else seen
    directory = directory.resolve()
    kustomization = _kustomization(directory)
    if kustomization is None or directory in seen:
        return
    seen.add(directory)
    try:
        spec = yaml.safe_load(kustomization.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return
    for entry in [*(spec.get("resources") or []), *(spec.get("components") or [])]:
        if isinstance(entry, str) and (directory / entry).is_dir():
            yield from patches_of(directory / entry, seen)
    for patch in [*(spec.get("patches") or []), *(spec.get("patchesJson6902") or [])]:
        if not isinstance(patch, dict):
            continue
        try:
            if patch.get("path"):
                yield directory / patch["path"], yaml.safe_load((directory / patch["path"]).read_text())
            elif patch.get("patch"):
                yield kustomization, yaml.safe_load(patch["patch"])
        except (OSError, yaml.YAMLError):
            continue


def failed_guard_hint(error: str, overlay: Path, display=str) -> str | None:
    """What to do when kustomize's `error` is a failed worker group guard: the patch files that expect another
    group at that index. None for any other error."""
    match = _FAILED_GUARD.search(error)
    if not match:
        return None
    path, index = match.group(1), match.group(2)
    expecting: dict[str, set[str]] = {}
    for file, ops in patches_of(overlay):
        for op in ops if isinstance(ops, list) else []:
            if isinstance(op, dict) and op.get("op") == "test" and op.get("path") == path:
                expecting.setdefault(str(op.get("value")), set()).add(display(file))
    where = "; ".join(f"{', '.join(sorted(files))} expect {name}" for name, files in sorted(expecting.items()))
    return (f"worker group {index} is not the group its JSON patches were written for"
            + (f" ({where})" if where else "")
            + ": a group was added before it, or the groups were reordered or renamed; fix: keep that group at "
            f"index {index}, or change the index in those patches (and in their `op: test` on groupName) to where "
            "the group now is (manifests/base/kustomization.yaml, \"Worker groups by name\")")
