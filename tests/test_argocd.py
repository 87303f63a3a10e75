"""argocd/: the generated argocd-cm, the repository URL placeholder, sync waves and options, the ApplicationSet's
overlays, and validation of every manifest against the pinned Argo CD CRD schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ARGOCD = REPO / "argocd"
REPO_URL = "https://github.com/your-org/kuberay-llm.git"
KUBERAY_HELM_REPO = "https://ray-project.github.io/kuberay-helm/"


def load(name: str) -> dict:
    return yaml.safe_load((ARGOCD / name).read_text())


def render_cm() -> str:
    sys.path.insert(0, str(ARGOCD / "health"))
    try:
        import render_argocd_cm
    finally:
        sys.path.pop(0)
    return render_argocd_cm.render()


# --- argocd-cm is generated from the Lua files -------------------------------------------------------------

def test_argocd_cm_is_the_fresh_rendering_of_the_health_scripts():
    assert (ARGOCD / "argocd-cm.yaml").read_text() == render_cm(), "argocd/argocd-cm.yaml is stale: make argocd-cm"


@pytest.mark.parametrize("check", sorted(p.parent.name for p in (ARGOCD / "health").glob("*/health.lua")))
def test_argocd_cm_embeds_each_health_script_verbatim(check):
    data = load("argocd-cm.yaml")["data"]
    assert data[f"resource.customizations.health.{check}"] == (ARGOCD / "health" / check / "health.lua").read_text()


def test_check_mode_fails_on_a_stale_argocd_cm(tmp_path):
    script = ARGOCD / "health" / "render_argocd_cm.py"
    stale = tmp_path / "argocd"
    (stale / "health").mkdir(parents=True)
    (stale / "health" / "render_argocd_cm.py").write_text(script.read_text())
    (stale / "health" / "ray.io_RayService").mkdir()
    (stale / "health" / "ray.io_RayService" / "health.lua").write_text("return {status = 'Healthy'}\n")
    (stale / "argocd-cm.yaml").write_text((ARGOCD / "argocd-cm.yaml").read_text())
    proc = subprocess.run([sys.executable, str(stale / "health" / "render_argocd_cm.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "argocd-cm.yaml is stale: run `make argocd-cm`" in proc.stderr


# --- one repository URL everywhere ---------------------------------------------------------------------------

def repo_urls() -> list[tuple[str, str]]:
    """(file, URL) for every Git source of this repository in argocd/."""
    found = []
    for path in sorted(ARGOCD.glob("*.yaml")):
        def walk(node, file=path.name):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "repoURL" and value != KUBERAY_HELM_REPO:
                        found.append((file, value))
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)
        walk(yaml.safe_load(path.read_text()))
    return found


def test_every_argocd_manifest_uses_the_same_repository_url():
    urls = repo_urls()
    assert {f for f, _ in urls} == {"root.yaml", "llm-overlays.yaml"}
    assert {u for _, u in urls} == {REPO_URL}
    assert REPO_URL in load("project.yaml")["spec"]["sourceRepos"]


def test_the_project_allows_exactly_the_sources_the_applications_use():
    sources = set(load("project.yaml")["spec"]["sourceRepos"])
    assert sources == {REPO_URL, load("kuberay-operator.yaml")["spec"]["source"]["repoURL"]}


# --- waves, sync options, operator pin --------------------------------------------------------------------------

def wave(name: str) -> int:
    return int(load(name)["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


def test_sync_waves_order_project_then_operator_then_workloads():
    assert wave("project.yaml") < wave("kuberay-operator.yaml") < wave("llm-overlays.yaml")


def test_operator_chart_is_pinned_to_the_makefile_kuberay_version_and_synced_server_side():
    app = load("kuberay-operator.yaml")["spec"]
    makefile = (REPO / "Makefile").read_text()
    pin = next(line.split("?=")[1].strip() for line in makefile.splitlines() if line.startswith("KUBERAY_VERSION ?="))
    assert app["source"] == {"repoURL": KUBERAY_HELM_REPO, "chart": "kuberay-operator",
                             "targetRevision": pin.removeprefix("v"), "helm": {"releaseName": "kuberay-operator"}}
    assert "ServerSideApply=true" in app["syncPolicy"]["syncOptions"]


def test_the_root_app_syncs_argocd_without_itself_and_without_argocd_cm():
    source = load("root.yaml")["spec"]["source"]
    assert source["path"] == "argocd"
    assert source["directory"]["exclude"] == "{root.yaml,argocd-cm.yaml}"


def test_the_operator_and_overlay_namespaces_are_project_destinations():
    import fnmatch

    destinations = [d["namespace"] for d in load("project.yaml")["spec"]["destinations"]]
    wanted = [load("kuberay-operator.yaml")["spec"]["destination"]["namespace"]] + \
        [f"llm-{o}" for o in overlays_of_the_applicationset()]
    for namespace in wanted:
        assert any(fnmatch.fnmatch(namespace, pattern) for pattern in destinations), namespace


# --- the ApplicationSet ---------------------------------------------------------------------------------------

def overlays_of_the_applicationset() -> list[str]:
    """The overlays the git directory generator selects, evaluated on the working tree."""
    import fnmatch

    directories = load("llm-overlays.yaml")["spec"]["generators"][0]["git"]["directories"]
    candidates = sorted(str(p.parent.relative_to(REPO)) for p in REPO.glob("overlays/*/kustomization.yaml"))
    selected = [c for c in candidates if any(fnmatch.fnmatch(c, d["path"]) for d in directories if not d.get("exclude"))]
    return [Path(c).name for c in selected
            if not any(fnmatch.fnmatch(c, d["path"]) for d in directories if d.get("exclude"))]


def test_the_applicationset_deploys_every_overlay_but_local_cpu():
    overlays = sorted(p.parent.name for p in REPO.glob("overlays/*/kustomization.yaml"))
    assert overlays_of_the_applicationset() == [o for o in overlays if o != "local-cpu"]


def test_generated_applications_retry_with_backoff_and_create_their_namespace():
    spec = load("llm-overlays.yaml")["spec"]["template"]["spec"]
    assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
    assert spec["syncPolicy"]["retry"]["backoff"] == {"duration": "30s", "factor": 2, "maxDuration": "10m"}


@pytest.mark.parametrize("overlay", overlays_of_the_applicationset())
def test_worker_replicas_are_ignored_because_the_overlay_runs_the_ray_autoscaler(overlay):
    """The ignoreDifferences of the template is right only while every deployed overlay autoscales."""
    from kuberay_llm import toolchain

    try:
        kustomize = toolchain.tool("kustomize")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))
    out = subprocess.run([str(kustomize), "build", str(REPO / "overlays" / overlay)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    service = next(o for o in yaml.safe_load_all(out) if o and o["kind"] == "RayService")
    assert service["spec"]["rayClusterConfig"].get("enableInTreeAutoscaling") is True
    ignored = load("llm-overlays.yaml")["spec"]["template"]["spec"]["ignoreDifferences"]
    assert {"group": "ray.io", "kind": "RayService",
            "jqPathExpressions": [".spec.rayClusterConfig.workerGroupSpecs[].replicas"]} in ignored
    assert "RespectIgnoreDifferences=true" in load("llm-overlays.yaml")["spec"]["template"]["spec"]["syncPolicy"]["syncOptions"]


# --- validation against the pinned Argo CD CRDs -------------------------------------------------------------------

def argocd_schemas() -> Path:
    from kuberay_llm import toolchain

    try:
        schemas = toolchain.bin_dir() / "schemas"
        toolchain.tool("kubeconform")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))
    if not (schemas / "application_argoproj.io_v1alpha1.json").exists():
        pytest.skip(f"{schemas} has no Argo CD schemas: run `make schemas` (ARGOCD_VERSION)")
    return schemas


def kubeconform(*files: Path) -> subprocess.CompletedProcess:
    from kuberay_llm import toolchain

    schemas = argocd_schemas()
    return subprocess.run([str(toolchain.tool("kubeconform")), "-strict", "-summary", "-output", "json",
                           "-schema-location", f"{schemas}/{{{{ .ResourceKind }}}}_{{{{ .Group }}}}_{{{{ .ResourceAPIVersion }}}}.json",
                           *map(str, files)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(p.name for p in ARGOCD.glob("*.yaml")))
def test_manifest_is_valid_against_the_pinned_schemas(name):
    proc = kubeconform(ARGOCD / name)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["summary"]["valid"] >= 1, proc.stdout + proc.stderr


@pytest.mark.parametrize(("name", "mutate", "error"), [
    ("kuberay-operator.yaml", lambda o: o["spec"]["syncPolicy"].update(automatic={}),
     "at '/spec/syncPolicy': additional properties 'automatic' not allowed"),
    ("llm-overlays.yaml", lambda o: o["spec"]["template"]["spec"]["ignoreDifferences"][0].update(jqPathExpression="x"),
     "at '/spec/template/spec/ignoreDifferences/0': additional properties 'jqPathExpression' not allowed"),
    ("project.yaml", lambda o: o["spec"].update(sourceRepo=[REPO_URL]), "at '/spec': additional properties 'sourceRepo' not allowed"),
    ("root.yaml", lambda o: o["spec"].pop("destination"), "at '/spec': missing property 'destination'"),
])
def test_schema_validation_rejects(tmp_path, name, mutate, error):
    obj = load(name)
    mutate(obj)
    bad = tmp_path / name
    bad.write_text(yaml.safe_dump(obj))
    proc = kubeconform(bad)
    assert proc.returncode != 0
    assert error in proc.stdout, proc.stdout
