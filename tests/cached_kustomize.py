"""The pinned kustomize, with each `kustomize build` answered once per input within one pytest run.

tests/conftest.py points `KUSTOMIZE` at this script for the run (toolchain.tool honours it, in-process and in
every `kuberay-llm` subprocess), so the ~450 builds of the offline suite run kustomize about 200 times. A build
is answered from the cache only when every file it can read is accounted for in the key:

- the repository's manifests/, overlays/ and deploy/ trees (path, size and mtime of every file, read at each
  call, so an edit during the run is a new key);
- the built directory's own files by content when it lies outside those trees (a wrapper overlay of a test);
- every path a kustomization.yaml there names must lie inside one of the two; a copy of the repository in a temp
  dir (overlay_copy) or anything else outside them is never cached: kustomize runs.

Only successful builds are kept; the real binary's stdout, stderr and exit code are returned unchanged.
Standard library only, started with `python -I -S` (about 20 ms).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = tuple(REPO / d for d in ("manifests", "overlays", "deploy"))
MAX_OWN_BYTES = 1 << 20  # a built directory outside the roots bigger than this is not cached
TOKEN = re.compile(r"[^\s'\"\[\],{}]+")


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def tree_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath, name)


def roots_fingerprint(h) -> None:
    for root in ROOTS:
        for path in tree_files(root):
            st = path.stat()
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def own_fingerprint(h, directory: Path) -> bool:
    """Hash the directory's files by content and check what its kustomizations name; False: not cacheable."""
    total = 0
    for path in tree_files(directory):
        data = path.read_bytes()
        total += len(data)
        if total > MAX_OWN_BYTES:
            return False
        h.update(f"{path.relative_to(directory)}\0{len(data)}\0".encode() + data)
        if path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            for token in TOKEN.findall(data.decode("utf-8", "replace")):
                token = token.rstrip(":")
                if not token or token.startswith("#"):
                    continue
                target = (path.parent / token)
                try:
                    if not target.exists():
                        continue
                    target = target.resolve()
                except (OSError, ValueError):
                    continue
                if not (inside(target, directory) or any(inside(target, r) for r in ROOTS)):
                    return False
    return True


def cache_key(args: list[str]) -> str | None:
    if len(args) < 2 or args[0] != "build" or any(a.startswith("-") for a in args[1:]):
        return None  # only a plain `kustomize build DIR` (a flag such as --load-restrictor can read anything)
    if len(args) != 2:
        return None
    try:
        directory = Path(args[1]).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not directory.is_dir():
        return None
    h = hashlib.sha256(f"{directory}\0".encode())
    roots_fingerprint(h)
    if not any(inside(directory, r) for r in ROOTS) and not own_fingerprint(h, directory):
        return None
    return h.hexdigest()


def main() -> int:
    real = os.environ["KUBERAY_LLM_TEST_KUSTOMIZE_REAL"]
    cache = Path(os.environ["KUBERAY_LLM_TEST_KUSTOMIZE_CACHE"])
    args = sys.argv[1:]
    key = cache_key(args)
    entry = cache / key if key else None
    if entry is not None and (entry / "stdout").exists():
        sys.stdout.buffer.write((entry / "stdout").read_bytes())
        sys.stderr.buffer.write((entry / "stderr").read_bytes())
        return 0
    proc = subprocess.run([real, *args], capture_output=True, check=False)
    if entry is not None and proc.returncode == 0:
        tmp = cache / f".{key}.{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "stderr").write_bytes(proc.stderr)
        (tmp / "stdout").write_bytes(proc.stdout)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process stored the same key first
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
    sys.stdout.buffer.write(proc.stdout)
    sys.stderr.buffer.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
