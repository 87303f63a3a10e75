"""Convert upstream schemas into strict, self-contained JSON schemas that kubeconform reads offline.

Inputs come from pinned Go modules (the Makefile's `schemas` target passes their directories):
- Kubernetes' OpenAPI v3 documents (k8s.io/kubernetes api/openapi-spec/v3/*.json): core kinds.
- CustomResourceDefinition YAML files (KubeRay, PodMonitor, Argo CD): their openAPIV3Schema.

"Strict" means an unknown field fails: every object schema that lists properties and does not allow
unknown fields upstream (x-kubernetes-preserve-unknown-fields) gets `additionalProperties: false`.

Files are named `<kind>_<group>_<version>.json` (lowercase kind; core group is `v1`), matching the
kubeconform schema-location template in kuberay_llm/schema_names.py. Build time only (`make schemas`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

from kuberay_llm.schema_names import file_name  # the naming preflight reads them by

_INT_OR_STRING = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"anyOf": [{"type": "string"}, {"type": "number"}]}


class _CRDLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` key (YAML's obsolete value tag, used in some CRD descriptions)."""


_CRDLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _strict(node, *, refs_prefix: str | None = None):
    """Recursively tighten a schema: no unknown fields, nullable and int-or-string made explicit."""
    if isinstance(node, list):
        return [_strict(n, refs_prefix=refs_prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref" and refs_prefix is not None and isinstance(value, str):
            out[key] = refs_prefix + value.rsplit("/", 1)[-1]
        elif key in ("properties", "patternProperties", "$defs", "definitions"):
            out[key] = {k: _strict(v, refs_prefix=refs_prefix) for k, v in value.items()}
        else:
            out[key] = _strict(value, refs_prefix=refs_prefix)
    if out.pop("x-kubernetes-int-or-string", False):
        for k in ("type", "format"):
            out.pop(k, None)
        out.update(copy.deepcopy(_INT_OR_STRING))
    out.pop("format", None)  # formats are advisory upstream (int32, byte, date-time)
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _object_meta(defs: dict) -> dict | None:
    return defs.get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def kubernetes_schemas(openapi_dir: Path) -> tuple[dict[str, dict], dict]:
    """{file name: schema} for every kind in the OpenAPI v3 documents, and the merged definitions."""
    defs: dict[str, dict] = {}
    for path in sorted(openapi_dir.glob("*.json")):
        defs.update(json.loads(path.read_text()).get("components", {}).get("schemas", {}))
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = copy.deepcopy(_INT_OR_STRING)
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = copy.deepcopy(_QUANTITY)
    strict_defs = {name: _strict(schema, refs_prefix="#/$defs/") for name, schema in defs.items()}
    out = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            if name.endswith("List") or gvk["kind"].endswith("Options"):
                continue
            out[file_name(gvk["kind"], api_version)] = _bundle(name, strict_defs)
    return out, strict_defs


def _bundle(root: str, strict_defs: dict) -> dict:
    """A self-contained schema: the root definition plus every definition it reaches."""
    needed, stack = set(), [root]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(_refs(strict_defs[name]))
    schema = copy.deepcopy(strict_defs[root])
    schema["$defs"] = {n: strict_defs[n] for n in sorted(needed)}
    return schema


def _refs(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                found.append(v.rsplit("/", 1)[-1])
            else:
                found.extend(_refs(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_refs(v))
    return found


def crd_schemas(crd_dir: Path, strict_defs: dict) -> dict[str, dict]:
    """{file name: schema} for every served version of every CRD in `crd_dir`."""
    out = {}
    meta_name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=_CRDLoader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                raw = (version.get("schema") or {}).get("openAPIV3Schema")
                if raw is None or not version.get("served", True):
                    continue
                schema = _strict(raw)
                props = schema.setdefault("properties", {})
                if meta_name in strict_defs:  # strict metadata, as the API server checks it
                    props["metadata"] = {"$ref": f"#/$defs/{meta_name}"}
                    schema["$defs"] = _bundle(meta_name, strict_defs)["$defs"]
                schema["additionalProperties"] = False
                api_version = f"{spec['group']}/{version['name']}"
                out[file_name(spec["names"]["kind"], api_version)] = schema
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--kubernetes-openapi", required=True, type=Path, help="api/openapi-spec/v3 directory")
    parser.add_argument("--crds", action="append", default=[], type=Path, help="directory of CRD YAML files")
    args = parser.parse_args(argv)
    for directory in [args.kubernetes_openapi, *args.crds]:
        if not directory.is_dir():
            print(f"error: {directory}: not a directory", file=sys.stderr)
            return 2
    schemas, strict_defs = kubernetes_schemas(args.kubernetes_openapi)
    for crd_dir in args.crds:
        schemas.update(crd_schemas(crd_dir, strict_defs))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (args.out / name).write_text(json.dumps(schema, separators=(",", ":")))
    (args.out / "index.json").write_text(json.dumps(sorted(schemas), indent=0))
    print(f"wrote {len(schemas)} schemas to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
