"""Pack what `make e2e-gpu` needs onto a GPU machine that has no network: pieces of at most 60 MiB.

A GPU machine without a package index (an air-gapped node, a bare rented machine) has Python, torch and the
NVIDIA driver, but not vLLM, Ray, the local control plane or iproute2. This script, run where the package
registries are reachable, writes into DIR (default .carry/):

    part-p*   the Python packages: vLLM + Ray Serve LLM + the kuberay-llm harness's dependencies, installed with
              `pip --target site` for the GPU machine's Python (3.12), without the packages that machine has
    part-b*   ./bin's control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the
              KubeRay operator), kustomize, kubeconform and the schemas, the KubeRay and kwok CRDs in Go module-cache layout, iproute2 and its libraries
    zstandard-*.whl  to decompress there (the machine may have no zstd binary)
    SHA256SUMS

bench/gpu/unpack.sh unpacks them there. Versions: vLLM and Ray are the newest pair that the machine's torch
takes (vLLM 0.26.0 pins torch==2.11.0; ray[llm]==2.58.0 pins vllm[audio]==0.26.0: both read from their wheels'
METADATA); carry-lock.txt pins every package. The tiers deploy Ray 2.60 / vLLM 0.29, which need torch 2.13: numbers measured with this carry say so.

    python bench/gpu/carry.py [--out DIR] [--skip-python] [--skip-binaries]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = Path(__file__).with_name("carry-lock.txt")  # name==version per line, and why those
PLATFORMS = ["manylinux_2_39_x86_64", "manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"]
# Not used on Hopper or by one dense-model replica: FlashAttention-2 (Hopper runs FA3), the Rust frontend,
# Blackwell-only kernels, Ray's Java jars, RLlib, profilers.
TRIM = ["vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so", "vllm/vllm-rs", "vllm/third_party/fmha_sm100", "ray/jars",
        "ray/rllib", "bin/py-spy", "bin/tune", "hf_transfer"]
CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "ray-operator"]
RENDER_TOOLS = ["kustomize", "kubeconform"]  # render and validate the generated overlays there
# Debian bookworm's iproute2 and the libraries `ip` links (ldd), for machines without it.
DEBS = ["iproute2", "libbpf1", "libelf1", "libmnl0", "libxtables12", "libcap2", "libdb5.3", "libtirpc3", "libselinux1",
        "libpcre2-8-0", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1",
        "libcom-err2", "libbsd0", "libmd0", "zlib1g", "libzstd1"]
PIECE = 60 * 1024 * 1024


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(map(str, cmd))[:200], flush=True)
    return subprocess.run(cmd, check=True, **kw)


def canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pip_target(args: list[str]) -> list[str]:
    plats = [f"--platform={p}" for p in PLATFORMS]
    return ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *plats]


def python_group(work: Path) -> Path:
    wheels, site = work / "wheels", work / "pyroot" / "site"
    wheels.mkdir(parents=True, exist_ok=True)
    picked = [line.strip() for line in LOCK.read_text().splitlines() if line.strip() and not line.startswith("#")]
    print(f"{len(picked)} packages to carry ({LOCK.name})", flush=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *pip_target([]), "-d", str(wheels), *picked])
    shutil.rmtree(site, ignore_errors=True)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", *pip_target([]),
         "--target", str(site),
         *sorted(str(p) for p in wheels.glob("*.whl"))])
    for rel in TRIM:
        path = site / rel
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for tests in list(site.glob("*/tests")):
        if tests.parent.name not in ("vllm", "ray"):  # vllm.tests / ray.tests are imported by nothing we run
            shutil.rmtree(tests, ignore_errors=True)
    for script in (site / "bin").iterdir():  # pip wrote this machine's python path into the shebangs
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            script.write_bytes(b"#!/usr/bin/env python3\n" + data.split(b"\n", 1)[1])
    (work / "pyroot" / "CARRIED.txt").write_text("\n".join(sorted(picked)) + "\n")
    return work / "pyroot"


def binaries_group(work: Path) -> Path:
    root = work / "binroot"
    shutil.rmtree(root, ignore_errors=True)
    (root / "bin").mkdir(parents=True)
    sys.path.insert(0, str(REPO / "scripts"))
    from kuberay_llm.cluster import controlplane  # the exact binaries `cluster up` starts
    for name in CONTROL_PLANE:
        path = controlplane.binary(name)
        shutil.copy2(path, root / "bin" / path.name)
        run(["strip", "--strip-all", str(root / "bin" / path.name)])  # debug info only: a quarter of a Go binary
    from kuberay_llm import toolchain
    for name in RENDER_TOOLS:
        path = toolchain.tool(name)
        shutil.copy2(path, root / "bin" / path.name)
        run(["strip", "--strip-all", str(root / "bin" / path.name)])
    shutil.copytree(toolchain.schemas_dir(), root / "bin" / "schemas")  # make schemas' output, for validate
    modcache = root / "gomodcache"
    for module, key in controlplane.CRD_MODULES:
        src = controlplane.module_dir(module, key)
        rel = src.relative_to(Path(run(["go", "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip()))
        for sub in controlplane.CRD_SUBDIRS[module]:
            shutil.copytree(src / sub, modcache / rel / sub)
    debs = work / "debs"
    debs.mkdir(exist_ok=True)
    run(["apt-get", "download", *DEBS], cwd=debs, capture_output=True)
    for deb in debs.glob("*.deb"):
        run(["dpkg", "-x", str(deb), str(root / "iproute2")])
    return root


def pack(root: Path, letter: str, out: Path) -> list[Path]:
    """tar | zstd -19 --long=27, split into PIECE-sized part-<letter>aa, -ab, ..."""
    for old in out.glob(f"part-{letter}*"):
        old.unlink()
    blob = out / f"group-{letter}.tar.zst"
    with open(blob, "wb") as fh:
        tar = subprocess.Popen(["tar", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
        run(["zstd", "-q", "-19", "--long=27", f"-T{os.cpu_count() or 2}", "-c"], stdin=tar.stdout, stdout=fh)
        if tar.wait() != 0:
            raise SystemExit("tar failed")
    run(["split", "-b", str(PIECE), "-a", "2", str(blob), str(out / f"part-{letter}")])
    blob.unlink()
    return sorted(out.glob(f"part-{letter}*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / ".carry")
    parser.add_argument("--skip-python", action="store_true")
    parser.add_argument("--skip-binaries", action="store_true")
    args = parser.parse_args()
    if shutil.which("zstd") is None:
        raise SystemExit("carry.py needs zstd (apt-get install zstd)")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    if not args.skip_python:
        pack(python_group(work), "p", args.out)
    if not args.skip_binaries:
        pack(binaries_group(work), "b", args.out)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *pip_target([]), "-d", str(args.out),
         "zstandard==0.25.0"])
    parts = sorted(args.out.glob("part-*"))
    (args.out / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in parts))
    for p in parts:
        print(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB")
    print(f"{len(parts)} pieces in {args.out}: carry one per call (bench/gpu/README.md)")


if __name__ == "__main__":
    main()
