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


def test_each_project_allows_exactly_the_source_of_its_applications():
    """The workloads' project only this repository, the operator's only KubeRay's Helm repository."""
    operator = load("kuberay-operator.yaml")["spec"]
    template = load("llm-overlays.yaml")["spec"]["template"]["spec"]
    projects = {name: load(name)["metadata"]["name"] for name in ("project.yaml", "project-operator.yaml")}
    assert operator["project"] == projects["project-operator.yaml"] == "kuberay-operator"
    assert template["project"] == projects["project.yaml"] == "kuberay-llm"
    assert load("project-operator.yaml")["spec"]["sourceRepos"] == [operator["source"]["repoURL"]]
    assert load("project.yaml")["spec"]["sourceRepos"] == [template["source"]["repoURL"]] == [REPO_URL]


def rendered_kinds() -> set[tuple[str, str, bool]]:
    """(group, kind, cluster-scoped) of everything the overlays render and each component adds, by kustomize:
    every overlay, and every component on top of an overlay (local-cpu, or small where local-cpu refuses it)."""
    import os
    import tempfile

    from kuberay_llm import toolchain

    try:
        kustomize = toolchain.tool("kustomize")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(str(exc))

    def build(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(kustomize), "build", "--load-restrictor", "LoadRestrictionsNone", str(path)],
                              capture_output=True, text=True, timeout=120, check=False)

    docs = []
    for overlay in sorted((REPO / "overlays").glob("*/kustomization.yaml")):
        proc = build(overlay.parent)
        assert proc.returncode == 0, f"{overlay.parent.name}: {proc.stderr}"
        docs += [d for d in yaml.safe_load_all(proc.stdout) if d]
    with tempfile.TemporaryDirectory() as tmp:
        for component in sorted((REPO / "manifests" / "components").glob("*/kustomization.yaml")):
            errors = []
            for base in ("local-cpu", "small"):
                listed = yaml.safe_load((REPO / "overlays" / base / "kustomization.yaml").read_text()).get("components")
                if component.parent.name in {Path(c).name for c in listed or []}:
                    break  # on by default (pod-security): its kinds are in the overlay's own render above
                (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
                    "resources": [os.path.relpath(REPO / "overlays" / base, tmp)],
                    "components": [os.path.relpath(component.parent, tmp)]}))
                proc = build(Path(tmp))
                if proc.returncode == 0:
                    docs += [d for d in yaml.safe_load_all(proc.stdout) if d]
                    break
                errors.append(f"on {base}: {proc.stderr.strip()}")
            else:
                pytest.fail(f"component {component.parent.name} renders on no overlay: {errors}")
    cluster_scoped = {"Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                      "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    return {(d["apiVersion"].rpartition("/")[0], d["kind"], d["kind"] in cluster_scoped) for d in docs}


def test_the_workloads_project_allows_exactly_the_kinds_the_repository_renders():
    spec = load("project.yaml")["spec"]
    allowed_namespaced = {(r["group"], r["kind"]) for r in spec["namespaceResourceWhitelist"]}
    allowed_cluster = {(r["group"], r["kind"]) for r in spec["clusterResourceWhitelist"]}
    kinds = rendered_kinds()
    hint = "argocd/project.yaml must allow exactly the (group, kind)s overlays/ and manifests/components render"
    assert allowed_namespaced == {(g, k) for g, k, cluster in kinds if not cluster}, hint
    # plus the Namespace CreateNamespace=true makes through this project
    assert allowed_cluster == {(g, k) for g, k, cluster in kinds if cluster} | {("", "Namespace")}, hint
    assert not {k for _, k in allowed_cluster | allowed_namespaced} & {
        "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CustomResourceDefinition"}


def test_only_the_operator_project_allows_crds_and_cluster_rbac():
    operator = {(r["group"], r["kind"]) for r in load("project-operator.yaml")["spec"]["clusterResourceWhitelist"]}
    assert {("apiextensions.k8s.io", "CustomResourceDefinition"), ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding")} <= operator


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


def test_the_operator_and_overlay_namespaces_are_destinations_of_their_own_project_only():
    import fnmatch

    def allows(project: str, namespace: str) -> bool:
        return any(fnmatch.fnmatch(namespace, d["namespace"]) for d in load(project)["spec"]["destinations"])

    operator_ns = load("kuberay-operator.yaml")["spec"]["destination"]["namespace"]
    assert allows("project-operator.yaml", operator_ns) and not allows("project.yaml", operator_ns)
    for namespace in [f"llm-{o}" for o in overlays_of_the_applicationset()]:
        assert allows("project.yaml", namespace) and not allows("project-operator.yaml", namespace), namespace


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


def test_no_difference_is_ignored_for_replicas():
    """The autoscaler scales the RayCluster, which Argo CD does not diff: ignoring RayService replicas would only
    drop git changes of them (tests/controlplane/test_argocd_sync.py shows both with the real Argo CD)."""
    spec = load("llm-overlays.yaml")["spec"]["template"]["spec"]
    assert "ignoreDifferences" not in spec
    assert not any(o.startswith("RespectIgnoreDifferences") for o in spec["syncPolicy"]["syncOptions"])


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
    ("llm-overlays.yaml", lambda o: o["spec"]["template"]["spec"]["syncPolicy"]["managedNamespaceMetadata"].update(label={}),
     "at '/spec/template/spec/syncPolicy/managedNamespaceMetadata': additional properties 'label' not allowed"),
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


def test_make_argocd_refuses_a_version_the_wrapper_module_does_not_pin(tmp_path):
    """The Makefile pin and hack/tools/argocd/go.mod must agree; the check runs before any build."""
    gomod = (REPO / "hack/tools/argocd/go.mod").read_text().split()
    pinned = gomod[gomod.index("github.com/argoproj/argo-cd/v3") + 1]
    proc = subprocess.run(["make", "--no-print-directory", "argocd", "ARGOCD_VERSION=v0.0.1",
                           f"LOCALBIN={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert (f"hack/tools/argocd/go.mod requires argo-cd/v3 {pinned} but the Makefile pins ARGOCD_VERSION=v0.0.1: "
            "bump both") in proc.stderr, proc.stderr
    assert not (tmp_path / "argocd-v0.0.1").exists()
