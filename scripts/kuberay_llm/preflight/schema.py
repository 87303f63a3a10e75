"""Check 2: every object against the Kubernetes and CRD schemas, strictly (an unknown field fails).

Runs the pinned kubeconform over the schemas `make schemas` converted from the pinned Go modules.
"""

from __future__ import annotations

import json

import yaml

from kuberay_llm import schema_names, toolchain
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.render import Rendered

_FIX = "remove or rename the field (kubectl explain <kind>.<path> lists the valid ones)"


def check(rendered: Rendered) -> list[Finding]:
    schema_dir = toolchain.schemas_dir()
    text = "---\n".join(_dump(obj) for obj in rendered.objects)
    output = _kubeconform(text, schema_dir, rendered.source)
    findings = []
    for res in json.loads(output).get("resources") or []:
        if res.get("status") not in ("statusInvalid", "statusError"):
            continue
        obj = f"{res.get('kind')}/{res.get('name')}"
        errors = res.get("validationErrors") or []
        if not errors:
            msg = res.get("msg", "")
            if "could not find schema" in msg:
                findings.append(Finding(ERROR, rendered.source, obj, "apiVersion",
                                        f"no schema for {res.get('kind')} {res.get('version')}",
                                        "check apiVersion/kind, or add the CRD's module to `make schemas`"))
            else:
                findings.append(Finding(ERROR, rendered.source, obj, "", msg, _FIX))
            continue
        for err in errors:
            path = err.get("path", "").strip("/").replace("/", ".") or "(root)"
            findings.append(Finding(ERROR, rendered.source, obj, path, err.get("msg", ""), _FIX))
    return findings


def _dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def _kubeconform(text: str, schema_dir, source: str) -> str:
    args = [toolchain.tool("kubeconform"), "-strict", "-output", "json", "-summary=false",
            "-schema-location", f"{schema_dir}/{schema_names.SCHEMA_LOCATION}", "-"]
    # kubeconform exits 1 when a resource is invalid; its JSON report is what we read either way.
    return toolchain.run_tool(args, what=source, stdin=text, ok_codes=(0, 1))
