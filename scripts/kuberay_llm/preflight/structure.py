"""Check 2b: structure the strict schema lets through and the API server or kubectl refuses, for every object.

- exact-case kinds: kubeconform finds a schema by the lower-cased kind, but the REST mapping kubectl and the
  client's discovery use is exact (k8s.io/apimachinery v0.36.3 pkg/api/meta/restmapper.go RESTMappings looks the
  GroupVersionKind up in kindToPluralResource as given; the miss is NoKindMatchError, errors.go:
  `no matches for kind "Rayservice" in version "ray.io/v1"`);
- every object has metadata.name: apimachinery v0.36.3 pkg/api/validation/objectmeta.go ValidateObjectMetaAccessor
  (`name or generateName is required`), and an apply addresses the object by its name (client-go v0.36.3
  rest/request.go: `resource name may not be empty`), so generateName alone does not do;
- integers within their OpenAPI format: the API server checks a custom resource's `integer` fields against
  `int32` / `int64` (k8s.io/apiextensions-apiserver v0.36.3 pkg/apiserver/validation/formats.go keeps exactly those
  two formats for integers; k8s.io/kube-openapi@v0.0.0-20260317180543-43fb72c5454a, the version it pins,
  pkg/validation/validate/values.go IsValueValidAgainstRange: "value must be of type integer with format int32",
  int64 when there is no format), and decodes a built-in object into Go's int32/int64 fields. The KubeRay v1.6.2
  CRDs (config/crd/bases/ray.io_rayservices.yaml) declare replicas, minReplicas, maxReplicas, numOfHosts, the
  ports and the probes `format: int32`. An int-or-string holds an int32 (apimachinery pkg/util/intstr IntVal).
The formats and the kinds' spelling come from the pinned upstream documents (preflight/upstream.py).
"""

from __future__ import annotations

from kuberay_llm.preflight import upstream
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding

RANGES = {"int32": (-(2 ** 31), 2 ** 31 - 1), "int64": (-(2 ** 63), 2 ** 63 - 1)}
_INT32_LOW, _INT32_HIGH = RANGES["int32"]


def object_label(obj: dict) -> str:
    """`Kind/name` as the other checks name an object (`(no name)` where it has none)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name")
    return f"{obj.get('kind') or '(no kind)'}/{name if isinstance(name, str) and name else '(no name)'}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _beyond_int32(node) -> bool:
    if isinstance(node, dict):
        return any(_beyond_int32(v) for v in node.values())
    if isinstance(node, list):
        return any(_beyond_int32(v) for v in node)
    return _is_int(node) and not _INT32_LOW <= node <= _INT32_HIGH


def _name(source: str, obj: dict, label: str) -> list[Finding]:
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return []  # the schema reports metadata of the wrong type
    meta = meta or {}
    name = meta.get("name")
    if isinstance(name, str) and name:
        return []
    kind = obj.get("kind") or "object"
    if meta.get("generateName"):
        return [Finding(ERROR, source, label, "metadata.name",
                        f"is missing and generateName={meta['generateName']} names an object only when it is "
                        "created: apply addresses the object by its name (resource name may not be empty)",
                        f"set metadata.name on the {kind}")]
    where = "metadata.name" if "metadata" in obj else "metadata"
    return [Finding(ERROR, source, label, where,
                    "Required value: name or generateName is required (the API server refuses the object, and "
                    "apply cannot address it)", f"add metadata.name to the {kind} (lower-case letters, digits and '-')")]


def _kind(source: str, obj: dict, label: str, up: upstream.Upstream) -> list[Finding]:
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return []  # the schema lookup reports it
    right = up.canonical_kind(api_version, kind)
    if right is None or right == kind:
        return []
    return [Finding(ERROR, source, label, f"kind={kind}",
                    f'no matches for kind "{kind}" in version "{api_version}": kinds are case-sensitive, and '
                    f"kubectl and the API server know it as {right}", f"spell it kind: {right}")]


def _walk(up: upstream.Upstream, value, node: dict, path: str, out: list[tuple[str, int, str]]) -> None:
    node = up.resolve(node) if isinstance(node, dict) else {}
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        for key, child in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if isinstance(sub, dict):
                _walk(up, child, sub, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        items = node.get("items")
        if isinstance(items, dict):
            for i, child in enumerate(value):
                _walk(up, child, items, f"{path}[{i}]", out)
    elif _is_int(value):
        if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
            fmt = "int32"
        elif node.get("type") == "integer":
            fmt = node.get("format") if node.get("format") in RANGES else "int64"
        else:
            return  # a number (a quantity, a float) has no integer range
        low, high = RANGES[fmt]
        if not low <= value <= high:
            out.append((path, value, fmt))


def _integers(source: str, obj: dict, label: str, up: upstream.Upstream) -> list[Finding]:
    if not _beyond_int32(obj) or not isinstance(obj.get("kind"), str) or not isinstance(obj.get("apiVersion"), str):
        return []
    schema = up.schema(obj["apiVersion"], up.canonical_kind(obj["apiVersion"], obj["kind"]) or obj["kind"])
    if schema is None:
        return []  # no pinned document defines the kind: the schema lookup reports it
    found: list[tuple[str, int, str]] = []
    _walk(up, obj, schema, "", found)
    out = []
    for path, value, fmt in found:
        low, high = RANGES[fmt]
        out.append(Finding(ERROR, source, label, f"{path}={value}",
                           f"must be of type integer with format {fmt} ({low} to {high}): the API server refuses "
                           "the object", f"use a value of at most {high}" if value > high else f"use a value of at least {low}"))
    return out


def check(source: str, objects: list) -> list[Finding]:
    """Every object's kind spelling, name and integer ranges."""
    up = upstream.load()
    out = []
    if up.missing:
        out.append(Finding(WARNING, source, "(every object)", "kind, integer fields",
                           f"not in the Go module cache: {', '.join(up.missing)}: the spelling of kinds and the "
                           "int32/int64 ranges of their integers were not checked",
                           "run `make schemas` (it downloads them), or set GOMODCACHE to the cache that holds them"))
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        label = object_label(obj)
        out += _kind(source, obj, label, up) + _name(source, obj, label) + _integers(source, obj, label, up)
    return out
