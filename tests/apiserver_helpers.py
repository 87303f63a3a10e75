"""A real etcd + kube-apiserver (tests/controlplane/localcluster.py) with the KubeRay CRDs and the Prometheus
Operator's PodMonitor and PrometheusRule CRDs of the pinned modules, for the hardening suites: objects are
created with dryRun=All and fieldValidation=Strict, so an unknown or misplaced field fails as on a cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "controlplane"))

from localcluster import LocalControlPlane  # noqa: E402

PROMETHEUS_CRDS = ("monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")


def prometheus_crd_dir() -> Path:
    from kuberay_llm import toolchain

    version = toolchain.pins()["PROMETHEUS_OPERATOR_VERSION"]
    proc = subprocess.run(["go", "mod", "download", "-json",
                           f"github.com/prometheus-operator/prometheus-operator@{version}"],
                          capture_output=True, text=True, timeout=300, check=False, cwd=tempfile.gettempdir())
    info = json.loads(proc.stdout or "{}")
    if not info.get("Dir"):
        raise RuntimeError(f"go mod download of prometheus-operator failed: {info.get('Error') or proc.stderr.strip()}")
    return Path(info["Dir"]) / "example" / "prometheus-operator-crd"


def start_plane() -> LocalControlPlane:
    plane = LocalControlPlane().start()
    kube = plane.kube()
    for name in PROMETHEUS_CRDS:
        crd = yaml.safe_load((prometheus_crd_dir() / name).read_text())
        kube.request("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                     query=[("fieldManager", "kuberay-llm-tests"), ("force", "true")], body=crd,
                     content_type="application/apply-patch+yaml", timeout=60)
    deadline = time.monotonic() + 60
    while kube.get("/apis/monitoring.coreos.com/v1") is None or len(
            kube.get("/apis/monitoring.coreos.com/v1").get("resources", [])) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("monitoring.coreos.com/v1 not served after its CRDs were applied")
        time.sleep(0.2)
    return plane


def create_namespace(kube, name: str, labels: dict | None = None) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name, "labels": labels or {}}})


def dry_run_create(kube, namespace: str, obj: dict) -> str | None:
    """The API server's verdict on creating `obj` (dry run, strict field validation): None, or its message."""
    from kuberay_llm.harness.kube import ApiError

    resource = kube.resource(obj["apiVersion"], obj["kind"])
    if resource is None:
        return f"the API server does not serve {obj['apiVersion']} {obj['kind']}"
    try:
        kube.request("POST", resource.path(namespace), body=obj,
                     query=[("dryRun", "All"), ("fieldValidation", "Strict"), ("fieldManager", "kuberay-llm-tests")])
    except ApiError as err:
        return err.message
    return None
