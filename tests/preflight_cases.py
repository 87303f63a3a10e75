"""Broken copies of a rendered overlay, validated together: each case changes the overlay's rendered objects, is
written to `<case>.yaml` in a temporary working directory (so messages name that file), and every case of a
module is validated in one run (one kubeconform start)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from kuberay_llm import render, validate


def rayservice(objects: list[dict]) -> dict:
    return next(o for o in objects if o.get("kind") == "RayService")


def worker(rs: dict, index: int = 0) -> dict:
    return rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][index]


def head(rs: dict) -> dict:
    return rs["spec"]["rayClusterConfig"]["headGroupSpec"]


def serve_config(rs: dict) -> dict:
    return yaml.safe_load(rs["spec"]["serveConfigV2"])


def edit_serve_config(rs: dict, change) -> None:
    """change(first llm_config, whole serve config) on the RayService's serveConfigV2."""
    data = serve_config(rs)
    change(data["applications"][0]["args"]["llm_configs"][0], data)
    rs["spec"]["serveConfigV2"] = yaml.safe_dump(data, sort_keys=False)


def run_cases(cases: dict, bases: dict[str, list[dict]], directory: Path) -> dict:
    """{case: (exit code, findings as printed)} for cases {name: (base overlay, change(objects, rayservice))}."""
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        for name, (base, change) in cases.items():
            objects = copy.deepcopy(bases[base])
            change(objects, rayservice(objects))
            (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        outcomes = validate.validate_sources([(f"{n}.yaml", lambda n=n: render.load_source(f"{n}.yaml"))
                                              for n in cases])
    finally:
        os.chdir(cwd)
    return {name: (o.exit_code, [f"{f.severity}: {f}" for f in o.findings] + ([o.error] if o.error else []))
            for name, o in zip(cases, outcomes)}


def lines(results: dict, name: str, severity: str = "error", code: int | None = None) -> list[str]:
    """The case's findings of one severity; with `code`, asserts its exit code first."""
    exit_code, found = results[name]
    if code is not None:
        assert exit_code == code, found
    return [line for line in found if line.startswith(f"{severity}: ")]
