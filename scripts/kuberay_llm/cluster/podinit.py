"""First process of a container of the local kubelet: sets up the container's view, then execs its command.

Runs as PID 1 of fresh mount, UTS and PID namespaces inside the pod's network namespace
(`ip netns exec POD unshare --mount --uts --pid --fork --mount-proc -- python -m kuberay_llm.cluster.podinit
SPEC.json`), so when the command exits every process it started goes with it, as in a container.

The container sees this machine's file system (Ray and vLLM come from ./.venv, standing in for the image)
with its own /tmp, /etc/hosts, /etc/resolv.conf, /etc/hostname and hostname, and the pod's volumes at their
mount paths. A mount path whose parent does not exist here (/home/ray/... on a machine without that user)
gets a copy-on-write overlay of its nearest existing ancestor, with the overlay's upper layer in memory:
the container can create the path, this machine's files stay untouched and remain visible (the .venv).
Every source is opened before /tmp is replaced, so a cluster directory under /tmp works too.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from pathlib import Path

EXIT_SETUP_FAILED = 128  # what container runtimes report for a container that could not start
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
_libc = ctypes.CDLL(None, use_errno=True)


def fail(message: str) -> None:
    print(f"local kubelet: container setup failed: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_SETUP_FAILED)


def mount(source: str, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        fail(f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(err)}")


def bind(source: str, target: str, read_only: bool = False, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def held(path: str) -> str:
    """A path that keeps naming `path` after /tmp is replaced: /proc/self/fd/N of an O_PATH descriptor."""
    try:
        fd = os.open(path, os.O_PATH)
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    return f"/proc/self/fd/{fd}"


def mount_points() -> list[str]:
    return [line.split()[4].encode().decode("unicode_escape")
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


class Overlays:
    """Copy-on-write overlays of existing directories, so missing mount points can be created."""

    def __init__(self, scratch: str, private: list[str]):
        self.scratch = scratch
        self.private = [d.rstrip("/") + "/" for d in private]  # the container's own directories: create in place
        self.done: set[str] = set()

    def ensure_dir(self, target: str) -> str:
        """`target` exists afterwards (created inside an overlay if needed); returns its resolved path."""
        path = Path(target)
        missing = []
        while not path.exists():
            missing.append(path.name)
            path = path.parent
        ancestor = os.path.realpath(path)
        resolved = os.path.join(ancestor, *reversed(missing))
        if not missing:
            return resolved
        if not any((ancestor + "/").startswith(d) for d in self.private):
            if ancestor == "/":
                fail(f"mount point {target}: its parent / cannot be overlaid here; mount the volume below an "
                     "existing directory")
            if ancestor not in self.done:
                self.overlay(ancestor)
        os.makedirs(resolved, exist_ok=True)
        return resolved

    def overlay(self, directory: str) -> None:
        n = len(self.done)
        full, upper, work = (f"{self.scratch}/ovl{n}-{part}" for part in ("full", "upper", "work"))
        for d in (full, upper, work):
            os.makedirs(d)
        below = [p for p in mount_points() if p.startswith(directory.rstrip("/") + "/")]
        bind(directory, full, recursive=True)  # the whole view, to put the mounts below `directory` back on top
        mount("overlay", directory, "overlay", 0, f"lowerdir={directory},upperdir={upper},workdir={work}")
        for point in sorted(set(below), key=len):
            rel = os.path.relpath(point, directory)
            if os.path.exists(os.path.join(full, rel)) and os.path.exists(point):
                bind(os.path.join(full, rel), point, recursive=True)
        self.done.add(directory)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    env = spec["env"]
    home = env.get("HOME", "/")
    mount("tmpfs", spec["scratch"], "tmpfs", 0, "mode=0700")
    scratch = held(spec["scratch"])
    tmp, home_source = held(spec["tmp"]), held(home)
    # The checkout (its .venv: Python, Ray, vLLM) may itself live under this machine's /tmp, as a CI clone can.
    repo = str(Path(__file__).resolve().parents[3])
    repo_source = held(repo)
    files = {target: held(source) for target, source in spec["files"].items() if os.path.exists(target)}
    sources = [held(m["source"]) if not m.get("tmpfs") else "" for m in spec["mounts"]]
    socket.sethostname(spec["hostname"])
    bind(tmp, "/tmp", recursive=True)
    for target, source in files.items():
        bind(source, target)
    overlays = Overlays(scratch, private=["/tmp", home])
    if not os.path.isdir(home):  # HOME lived under this machine's /tmp: put it back at its path
        os.makedirs(home)
        bind(home_source, home)
    if not os.path.isdir(repo):  # the checkout lived under this machine's /tmp: put it back at its path
        os.makedirs(repo)
        bind(repo_source, repo, recursive=True)
    for m, source in zip(spec["mounts"], sources):
        if m.get("directory", True):
            target = overlays.ensure_dir(m["target"])
        else:
            target = os.path.join(overlays.ensure_dir(os.path.dirname(m["target"])), os.path.basename(m["target"]))
            if not os.path.exists(target):
                Path(target).touch()
        if m.get("tmpfs"):
            mount("tmpfs", target, "tmpfs", 0, f"size={m['tmpfs']}")
        else:
            bind(source, target, read_only=bool(m.get("readOnly")))
    workdir = spec.get("workingDir") or home
    try:
        os.chdir(overlays.ensure_dir(workdir))
    except OSError as exc:
        fail(f"workingDir {workdir}: {exc.strerror}")
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f'local kubelet: exec: "{argv[0]}": {exc.strerror}', file=sys.stderr, flush=True)
        sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    main(sys.argv[1])
