"""The pinned upstream API documents, for the two facts the converted schemas in ./bin/schemas do not keep.

`make schemas` converts the same documents (hack/gen/schemas.py) into the JSON schemas kubeconform reads, and
both facts are lost on the way: kubeconform looks a schema up by the lower-cased kind (so `Rayservice` finds
RayService's schema), and the conversion drops every `format` (so `int32` fields take any integer). Both are read
here from the documents themselves, in the Go module cache, at the versions the Makefile pins (its `schemas`
target lists the same four sources):
- Kubernetes' OpenAPI v3 documents (k8s.io/kubernetes api/openapi-spec/v3): each definition's
  x-kubernetes-group-version-kind and its integer formats;
- the CustomResourceDefinitions of KubeRay, the Prometheus operator and Argo CD: spec.group, spec.names.kind and
  each served version's openAPIV3Schema.

Loaded once per process; the CRDs' schemas only when an object needs one (an integer beyond int32's range).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kuberay_llm import toolchain

# (module, its Makefile pin, the directory `make schemas` reads, what it holds)
SOURCES = (
    ("k8s.io/kubernetes", "KUBERNETES_VERSION", "api/openapi-spec/v3", "openapi"),
    ("github.com/ray-project/kuberay/ray-operator", "KUBERAY_VERSION", "config/crd/bases", "crd"),
    ("github.com/prometheus-operator/prometheus-operator", "PROMETHEUS_OPERATOR_VERSION",
     "example/prometheus-operator-crd", "crd"),
    ("github.com/argoproj/argo-cd/v3", "ARGOCD_VERSION", "manifests/crds", "crd"),
)
_REF_PREFIX = "#/components/schemas/"
_CRD_GROUP = re.compile(r"^  group: ['\"]?([^'\"\s]+)", re.M)
_CRD_KIND = re.compile(r"^  names:\n(?:    .*\n)*?    kind: ['\"]?([^'\"\s]+)", re.M)


def module_cache() -> Path:
    """$GOMODCACHE, else what `go env GOMODCACHE` says, else Go's default ($GOPATH/pkg/mod, ~/go/pkg/mod)."""
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    go = shutil.which("go")
    if go:
        try:
            out = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30,
                                 check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if out:
            return Path(out)
    gopath = os.environ.get("GOPATH", "").split(os.pathsep)[0]
    return Path(gopath) / "pkg" / "mod" if gopath else Path("~/go/pkg/mod").expanduser()


def module_dir(module: str, version: str) -> Path:
    """The module cache's layout: upper-case letters escaped as '!' + lower case (golang.org/x/mod/module)."""
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    return module_cache() / f"{escaped}@{version}"


@dataclass
class Upstream:
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)  # (group, kind.lower()) -> kind
    missing: list[str] = field(default_factory=list)  # `module@version (path)` not in the module cache
    definitions: dict[str, dict] = field(default_factory=dict)  # OpenAPI components.schemas
    gvk_definition: dict[tuple[str, str], str] = field(default_factory=dict)  # (apiVersion, kind) -> definition
    crd_files: dict[tuple[str, str], Path] = field(default_factory=dict)  # (group, kind) -> CRD file

    def canonical_kind(self, api_version: str, kind: str) -> str | None:
        """The kind as the API spells it, for a kind that matches one case-insensitively; else None."""
        return self.kinds.get((api_version.rpartition("/")[0], kind.lower()))

    def schema(self, api_version: str, kind: str) -> dict | None:
        """The upstream schema of one apiVersion and kind (an OpenAPI definition or a CRD version's
        openAPIV3Schema), or None if no pinned document defines it."""
        name = self.gvk_definition.get((api_version, kind))
        if name:
            return self.definitions.get(name)
        group, _, version = api_version.rpartition("/")
        path = self.crd_files.get((group, kind))
        return _crd_versions(path).get(version) if path else None

    def resolve(self, node: dict) -> dict:
        """A schema node with its $ref (alone or as OpenAPI's single allOf) followed."""
        for _ in range(8):
            ref = node.get("$ref")
            if ref is None and len(node.get("allOf") or ()) == 1 and isinstance(node["allOf"][0], dict):
                ref = node["allOf"][0].get("$ref")
            if not isinstance(ref, str) or not ref.startswith(_REF_PREFIX):
                return node
            node = self.definitions.get(ref[len(_REF_PREFIX):], {})
        return node


@functools.cache
def _crd_versions(path: Path) -> dict[str, dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = {}
    for doc in yaml.load_all(path.read_text(), Loader=loader):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            for version in (doc.get("spec") or {}).get("versions") or []:
                schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
                if isinstance(schema, dict):
                    out[str(version.get("name"))] = schema
    return out


@functools.cache
def load() -> Upstream:
    up = Upstream()
    pins = toolchain.pins()
    for module, pin, subdir, what in SOURCES:
        version = pins.get(pin, "")
        directory = module_dir(module, version) / subdir
        if not version or not directory.is_dir():
            up.missing.append(f"{module}@{version or '(no pin)'} ({directory})")
            continue
        if what == "openapi":
            for doc in sorted(directory.glob("*.json")):
                up.definitions.update(json.loads(doc.read_text()).get("components", {}).get("schemas", {}))
            for name, schema in up.definitions.items():
                for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                    group, version_, kind = gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")
                    api_version = f"{group}/{version_}" if group else version_
                    up.kinds.setdefault((group, kind.lower()), kind)
                    up.gvk_definition.setdefault((api_version, kind), name)
            continue
        for doc in sorted(directory.glob("*.yaml")):
            head = doc.read_text()[:65536]  # spec.group and spec.names come before the versions' schemas
            group, kind = _CRD_GROUP.search(head), _CRD_KIND.search(head)
            if "kind: CustomResourceDefinition" in head and group and kind:
                up.kinds.setdefault((group.group(1), kind.group(1).lower()), kind.group(1))
                up.crd_files.setdefault((group.group(1), kind.group(1)), doc)
    return up
