"""`kuberay-llm apply OVERLAY`: render with the pinned kustomize, then server-side apply every object.

Field manager `kuberay-llm`, fieldValidation=Strict: a typo in a field is rejected by the API server with
the field's path instead of being dropped silently. Reports created / configured / unchanged per object.

The overlay is the source of truth for the fields it sets. A conflict with the KubeRay operator alone is taken
back (a forced apply, as `kubectl apply --server-side --force-conflicts` would, and as Argo CD's server-side
sync always does): the operator adds its finalizer with a full-object Update that re-encodes the spec from its
Go types (ray-operator v1.6.2, controllers/ray/rayservice_controller.go: AddFinalizer + r.Update), which adds
`scaleStrategy: {}` and drops empty maps in every worker group. `workerGroupSpecs` is an atomic list in the CRD,
so the whole list passes to the operator's field manager and the next apply would conflict on it. The values
mean the same to the operator (its Go types read both alike). A conflict with anyone else (a `kubectl edit`,
another tool) still fails and names the manager, unless --force-conflicts is given.
"""

from __future__ import annotations

import argparse
import re
import sys

from kuberay_llm.errors import UserError
from kuberay_llm.harness.errors import ConnectionFailed, Failed, UsageError
from kuberay_llm.harness.kube import ApiError, Kube, Unreachable, forbidden_message

FIELD_MANAGER = "kuberay-llm"
# The operator's requests carry User-Agent `kuberay-operator/<version>` (ray-operator v1.6.2 main.go: userAgent,
# restConfig.UserAgent); an Update without a fieldManager is recorded under the agent's name before the "/".
OPERATOR_FIELD_MANAGER = "kuberay-operator"
# A conflict cause's message: `conflict with "<manager>"`, then ` using <apiVersion>` for an Update
# (k8s.io/apimachinery v0.36.3 pkg/util/managedfields/internal/conflict.go: NewConflictError, printManager).
_CONFLICT_MANAGER = re.compile(r'^conflict with "((?:[^"\\]|\\.)*)"')
INSTALL_OPERATOR_HINT = (
    "the cluster has no KubeRay CRDs (ray.io/v1 {kind}): install the KubeRay operator first, e.g. "
    "`helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator --version {version}`, "
    "or sync the Argo CD application in argocd/")

# Cluster-scoped definitions and namespaces before the objects that need them.
_KIND_ORDER = {"CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "Secret": 3, "ConfigMap": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overlay", help="overlay name (small, medium, ...) or directory")
    parser.add_argument("-n", "--namespace", help="namespace of the objects (default: the kube context's)")
    parser.add_argument("--dry-run", action="store_true", help="server-side dry run: validate and diff, change nothing")
    parser.add_argument("--force-conflicts", action="store_true",
                        help="take over fields another field manager owns (e.g. after a `kubectl edit`)")


def kuberay_version() -> str:
    from kuberay_llm import toolchain
    return toolchain.pins()["KUBERAY_VERSION"].lstrip("v")


def _stripped(obj: dict) -> dict:
    """An object without the fields every write changes, to compare a dry-run result with the live object."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k not in ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


def apply_objects(kube: Kube, objects: list[dict], *, source: str, dry_run: bool = False,
                  force_conflicts: bool = False, out=sys.stdout) -> dict[str, str]:
    """Server-side apply `objects`; returns {"Kind/name": "created" | "configured" | "unchanged"}."""
    results: dict[str, str] = {}
    for obj in sorted(objects, key=lambda o: _KIND_ORDER.get(o.get("kind"), 9)):
        kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
        label = f"{kind}/{name}"
        resource = kube.resource(obj.get("apiVersion", ""), kind)
        if resource is None:
            if obj.get("apiVersion", "").startswith("ray.io/"):
                raise Failed(f"{source}: {INSTALL_OPERATOR_HINT.format(kind=kind, version=kuberay_version())}")
            raise Failed(f"{source}: {label}: the cluster does not serve {obj.get('apiVersion')} {kind} "
                         "(install the CRD or controller that provides it, or drop the component)")
        namespace = None
        if resource.namespaced:
            declared = (obj.get("metadata") or {}).get("namespace")
            if declared and declared != kube.namespace and kube.explicit_namespace:
                raise UsageError(f"{source}: {label} declares namespace {declared!r} but --namespace is "
                                 f"{kube.namespace!r}: drop one of them")
            namespace = declared or kube.namespace
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        before = kube.get(resource.path(namespace, name))
        taken_back = ""
        try:
            try:
                after = kube.server_side_apply(obj, field_manager=FIELD_MANAGER, dry_run=dry_run,
                                               force=force_conflicts)
            except ApiError as err:
                fields = operator_conflicts(err)
                if not fields:
                    raise
                after = kube.server_side_apply(obj, field_manager=FIELD_MANAGER, dry_run=dry_run, force=True)
                taken_back = f" (took back {', '.join(fields)} from {OPERATOR_FIELD_MANAGER})"
        except ApiError as err:
            if err.status == 403:
                raise ConnectionFailed(f"{source}: {label}: {forbidden_message(err)}") from None
            message, hint = err.message, ""
            if err.status == 409:
                message, hint = conflicts_in_one_line(err), " (rerun with --force-conflicts to take them over)"
            if err.status == 404 and "namespaces" in err.message:
                hint = f" (create it first: kubectl create namespace {namespace})"
            raise Failed(f"{source}: {label} rejected by the API server: {message}{hint}") from None
        if before is None:
            verdict = "created"
        elif dry_run:
            verdict = "unchanged" if _stripped(before) == _stripped(after) else "configured"
        else:
            same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
            verdict = "unchanged" if same else "configured"
        results[label] = verdict
        where = f" -n {namespace}" if namespace else ""
        print(f"{kind.lower()}/{name}{where} {verdict}{taken_back}{' (server dry run)' if dry_run else ''}", file=out)
    return results


def _conflict_causes(err: ApiError) -> list[dict]:
    return [c for c in (err.details.get("causes") or []) if c.get("reason") == "FieldManagerConflict"]


def conflicts_in_one_line(err: ApiError) -> str:
    """The server's message of several conflicts spans lines (one per manager and field): one line of its causes."""
    causes = _conflict_causes(err)
    if not causes:
        return " ".join(err.message.split())
    listed = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes)
    return f"Apply failed with {len(causes)} conflict{'s' if len(causes) > 1 else ''}: {listed}"


def operator_conflicts(err: ApiError) -> list[str]:
    """The fields of an apply conflict if the KubeRay operator is the only other manager, else []."""
    causes = _conflict_causes(err)
    if err.status != 409 or not causes:
        return []
    managers = {match[1] if (match := _CONFLICT_MANAGER.match(c.get("message", ""))) else None for c in causes}
    return sorted({c.get("field", "?") for c in causes}) if managers == {OPERATOR_FIELD_MANAGER} else []


def run(args: argparse.Namespace) -> int:
    from kuberay_llm.render import render_overlay

    try:
        rendered = render_overlay(args.overlay)
    except UserError as err:
        raise UsageError(str(err)) from None
    kube = Kube.connect(args.namespace)
    kube.explicit_namespace = bool(args.namespace)
    kube.check_reachable()
    try:
        apply_objects(kube, rendered.objects, source=rendered.source, dry_run=args.dry_run,
                      force_conflicts=args.force_conflicts)
    except Unreachable as exc:
        raise ConnectionFailed(f"{rendered.source}: {exc}") from None
    return 0
