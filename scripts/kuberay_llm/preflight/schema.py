"""Check 2: every object against the Kubernetes and CRD schemas, strictly (an unknown field fails).

Runs the pinned kubeconform over the schemas `make schemas` converted from the pinned Go modules: once for
all the sources of a run (`check_many`), one file per source, so its start-up (~0.2 s, the 1 MB RayService
schema) is paid once.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

from kuberay_llm import schema_names, toolchain
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.render import Rendered

_FIX = "remove or rename the field (kubectl explain <kind>.<path> lists the valid ones)"


def check(rendered: Rendered) -> list[Finding]:
    return check_many([rendered])[0]


def check_many(sources: list[Rendered]) -> list[list[Finding]]:
    """The schema findings of each source, from one kubeconform run."""
    schema_dir = toolchain.schemas_dir()
    with tempfile.TemporaryDirectory(prefix="kuberay-llm-schema-") as tmp:
        files = []
        for i, rendered in enumerate(sources):
            path = Path(tmp) / f"{i}.yaml"
            path.write_text("---\n".join(_dump(obj) for obj in rendered.objects) or "{}\n")
            files.append(path)
        what = sources[0].source if len(sources) == 1 else f"{len(sources)} sources"
        report = json.loads(_kubeconform(files, schema_dir, what) or "{}").get("resources") or []
    by_file: dict[str, list[dict]] = {}
    for res in report:
        by_file.setdefault(Path(str(res.get("filename", ""))).name, []).append(res)
    return [_findings(by_file.get(f"{i}.yaml", []), r.source) for i, r in enumerate(sources)]


def _findings(resources: list[dict], source: str) -> list[Finding]:
    findings = []
    for res in resources:
        if res.get("status") not in ("statusInvalid", "statusError"):
            continue
        obj = f"{res.get('kind') or '(no kind)'}/{res.get('name') or '(no name)'}"
        errors = res.get("validationErrors") or []
        if not errors:
            msg = res.get("msg", "")
            if "could not find schema" in msg:
                findings.append(Finding(ERROR, source, obj, "apiVersion",
                                        f"no schema for {res.get('kind')} {res.get('version')}",
                                        "check apiVersion/kind, or add the CRD's module to `make schemas`"))
            else:
                findings.append(Finding(ERROR, source, obj, "(object)", msg, _FIX))
            continue
        for err in errors:
            path = err.get("path", "").strip("/").replace("/", ".") or "(root)"
            findings.append(Finding(ERROR, source, obj, path, err.get("msg", ""), _FIX))
    return findings


def _dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def _kubeconform(files: list[Path], schema_dir, what: str) -> str:
    args = [toolchain.tool("kubeconform"), "-strict", "-output", "json", "-summary=false",
            "-schema-location", f"{schema_dir}/{schema_names.SCHEMA_LOCATION}", *files]
    # kubeconform exits 1 when a resource is invalid; its JSON report is what we read either way.
    return toolchain.run_tool(args, what=what, ok_codes=(0, 1))
