"""The real Argo CD (`make argocd`: application-controller, repo-server and applicationset-controller of the
pinned argo-cd/v3) syncs this repository from a `git daemon` on loopback into a local etcd + kube-apiserver,
and its own Lua engine judges the RayService (localargocd.py).

One scenario, in file order (the tests share one Argo CD and build on each other's state): the root
Application syncs argocd/ in waves, the ApplicationSet makes one Application per overlay, the RayService health
follows what KubeRay reports, the autoscaler's replicas are not drift, a serve config commit is synced in place,
and the workloads' project keeps cluster-scoped kinds out of the overlays.

What is not real here, and why:
- The KubeRay operator Application points at KubeRay's Helm repository, which cannot be reached from here (the
  repo-server's proxy is a closed loopback port, so Argo CD fails at once, offline). The test shows the root
  failing that wave, then drops argocd/kuberay-operator.yaml in its own commit to go on; the control plane has
  the pinned KubeRay CRDs already (localcluster.py).
- No KubeRay operator runs: the test writes the RayService status KubeRay writes (cpkit.write_status) and the
  RayCluster KubeRay would own, since no pod can run here to make Serve report RUNNING for real.
- No kube-controller-manager runs: when Argo CD prunes an Application with foreground propagation, the test
  removes the `foregroundDeletion` finalizer as the garbage collector would.
The repository URL in argocd/*.yaml is substituted in the test's own commit only, as a fork changes it.
"""

from __future__ import annotations

import copy
import time

import pytest
import yaml

import cpkit
from kuberay_llm.harness.kube import ApiError
from localargocd import NAMESPACE, GitServer, LocalArgoCD, load_yaml_docs, substitute_repo_url
from localcluster import REPO_ROOT, LocalControlPlane

pytestmark = pytest.mark.timeout(300)

ARGO = "/apis/argoproj.io/v1alpha1/namespaces/argocd"
OVERLAYS = sorted(p.parent.name for p in (REPO_ROOT / "overlays").glob("*/kustomization.yaml"))
# README "GitOps with Argo CD": every overlay but local-cpu gets an Application.
DEPLOYED = [o for o in OVERLAYS if o != "local-cpu"]
SYNC_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def env():
    plane = LocalControlPlane()
    server = argocd = None
    try:
        plane.start()
        server = GitServer(plane).start()
        server.commit("point argocd/ at the local git daemon", lambda w: substitute_repo_url(w, server.url))
        argocd = LocalArgoCD(plane).start()
    except RuntimeError as err:
        if server:
            server.stop()
        plane.stop()
        pytest.fail(f"Argo CD did not start: {err}", pytrace=False)
    yield plane, server, argocd
    argocd.stop()
    server.stop()
    plane.stop()


def status(app: dict | None) -> dict:
    return (app or {}).get("status") or {}


def resource(app: dict | None, kind: str) -> dict | None:
    """The one managed resource of `kind` in the Application's status (sync status, health)."""
    found = [r for r in status(app).get("resources") or [] if r.get("kind") == kind]
    return found[0] if len(found) == 1 else None


def synced_at(argocd: LocalArgoCD, name: str, revision: str, timeout: float = SYNC_TIMEOUT_S) -> dict:
    return argocd.wait_for(f"{name} Synced at {revision[:8]}", lambda: (
        app if (app := argocd.app(name)) and status(app).get("sync", {}).get("status") == "Synced"
        and status(app)["sync"].get("revision") == revision and not status(app).get("conditions") else None),
        timeout=timeout)


def rayservice_health(argocd: LocalArgoCD, name: str, expected: dict, timeout: float = 30) -> dict:
    """Wait until Argo CD reports `expected` ({"status", "message"}) for the app's RayService."""
    seen = []

    def probe():
        res = resource(argocd.app(name), "RayService")
        health = (res or {}).get("health") or {}
        seen.append(health)
        return res if health == expected else None

    try:
        return argocd.wait_for(f"{name}: RayService {expected}", probe, timeout=timeout)
    except AssertionError as err:
        raise AssertionError(f"{err}\nlast health seen: {seen[-1] if seen else None}") from None


# --- waves ---------------------------------------------------------------------------------------------------------

def test_root_syncs_the_projects_then_fails_the_wave_of_the_unreachable_operator(env):
    plane, server, argocd = env
    kube = plane.kube()
    argocd.apply(load_yaml_docs(server.work / "argocd" / "root.yaml")[0])

    def operator_wave_failed():
        op = status(argocd.app("kuberay-llm")).get("operationState") or {}
        results = {(r["kind"], r["name"]): r for r in (op.get("syncResult") or {}).get("resources") or []}
        operator = results.get(("Application", "kuberay-operator"))
        return (op, results) if operator and operator.get("hookPhase") == "Failed" else None

    op, results = argocd.wait_for("the root's sync fails on the operator wave", operator_wave_failed)
    # wave -2: both projects; wave -1: the operator Application, Degraded by its own health check
    assert results[("AppProject", "kuberay-llm")]["status"] == "Synced"
    assert results[("AppProject", "kuberay-operator")]["status"] == "Synced"
    message = results[("Application", "kuberay-operator")]["message"]
    assert message.startswith("ComparisonError: Failed to load target state"), message
    assert "https://ray-project.github.io/kuberay-helm/ is not a valid chart repository or cannot be reached" in \
        message.replace('"', ""), message
    assert "one or more synchronization tasks completed unsuccessfully" in op["message"]
    # Argo CD's own verdict on an Application without manifests is Healthy: the check turns it into Degraded
    assert status(argocd.app("kuberay-operator"))["health"]["status"] == "Healthy"
    assert argocd.app("kuberay-operator")["spec"]["project"] == "kuberay-operator"
    # wave 0 never started
    assert kube.get(f"{ARGO}/applicationsets/kuberay-llm-overlays") is None


# --- the ApplicationSet ----------------------------------------------------------------------------------------------

def test_the_applicationset_makes_one_synced_application_per_overlay(env):
    plane, server, argocd = env
    kube = plane.kube()
    started = time.monotonic()
    revision = server.commit("no KubeRay operator Application here",
                             lambda w: (w / "argocd/kuberay-operator.yaml").unlink())
    # end the failing sync as `argocd app terminate-op` does, then look at the new commit
    kube.request("PATCH", f"{ARGO}/applications/kuberay-llm", content_type="application/merge-patch+json",
                 body={"status": {"operationState": {"phase": "Terminating"}}})
    argocd.refresh("kuberay-llm")
    argocd.wait_for("the operator Application pruned", lambda: (
        argocd.finish_foreground_deletion("kuberay-operator") or argocd.app("kuberay-operator") is None))
    synced_at(argocd, "kuberay-llm", revision)

    apps = argocd.wait_for("one Application per overlay", lambda: (
        names if (names := sorted(a["metadata"]["name"] for a in kube.request("GET", f"{ARGO}/applications")["items"]
                                  if a["metadata"]["name"] != "kuberay-llm")) == [f"llm-{o}" for o in DEPLOYED]
        else None), timeout=60)
    assert "llm-local-cpu" not in apps

    for overlay in DEPLOYED:
        app = synced_at(argocd, f"llm-{overlay}", revision)
        assert app["spec"]["source"] == {"repoURL": server.url, "targetRevision": "main", "path": f"overlays/{overlay}"}
        assert app["spec"]["destination"] == {"server": "https://kubernetes.default.svc", "namespace": f"llm-{overlay}"}
        assert app["spec"]["project"] == "kuberay-llm"
        service = rayservice_health(argocd, f"llm-{overlay}", {
            "status": "Progressing", "message": "Waiting for KubeRay to report the RayService status"})
        assert service["status"] == "Synced"
        assert kube.get(f"/apis/ray.io/v1/namespaces/llm-{overlay}/rayservices/{service['name']}") is not None
        assert all(r["status"] == "Synced" for r in status(app)["resources"]), status(app)["resources"]
    print(f"root commit to {len(DEPLOYED)} Applications Synced: {time.monotonic() - started:.1f}s")


def test_each_namespace_admits_its_overlays_pods_at_the_pod_security_level_argo_cd_set(env):
    """managedNamespaceMetadata labels llm-<tier>; the API server's PodSecurity admission judges a pod of every
    head and worker template of the overlay's RayService there (dry run), and privileged is set only where
    baseline would refuse them."""
    plane, _, argocd = env
    kube = plane.kube()

    def templates(overlay: str) -> list[dict]:
        name = resource(argocd.app(f"llm-{overlay}"), "RayService")["name"]
        spec = kube.get(f"/apis/ray.io/v1/namespaces/llm-{overlay}/rayservices/{name}")["spec"]["rayClusterConfig"]
        return [g["template"]["spec"] for g in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]]

    def admit(namespace: str, spec: dict) -> None:
        kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", query=[("dryRun", "All")],
                     body={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-check"}, "spec": spec})

    levels = {}
    for overlay in DEPLOYED:
        labels = kube.get(f"/api/v1/namespaces/llm-{overlay}")["metadata"]["labels"]
        levels[overlay] = labels.get("pod-security.kubernetes.io/enforce")
        assert labels.get("pod-security.kubernetes.io/warn") == "restricted", labels
        for spec in templates(overlay):
            admit(f"llm-{overlay}", spec)
    assert set(levels.values()) <= {"baseline", "privileged"}, levels
    kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "psa-baseline", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    for overlay, level in levels.items():
        if level == "privileged":
            refused = []
            for spec in templates(overlay):
                try:
                    admit("psa-baseline", spec)
                except ApiError as err:
                    refused.append(str(err))
            assert any('violates PodSecurity "baseline:latest"' in r for r in refused), (overlay, refused)


# --- health of the local-cpu RayService ----------------------------------------------------------------------------

def local_cpu_applicationset(server: GitServer) -> dict:
    """The committed ApplicationSet's template, generating for overlays/local-cpu only (the committed generator
    excludes it: it is not for a GitOps-managed cluster)."""
    appset = copy.deepcopy(load_yaml_docs(server.work / "argocd" / "llm-overlays.yaml")[0])
    appset["metadata"] = {"name": "kuberay-llm-local-cpu", "namespace": NAMESPACE}
    appset["spec"]["generators"][0]["git"]["directories"] = [{"path": "overlays/local-cpu"}]
    return appset


def test_rayservice_health_follows_what_kuberay_reports(env):
    plane, server, argocd = env
    argocd.apply(local_cpu_applicationset(server))
    app = synced_at(argocd, "llm-local-cpu", server.head())
    name = resource(app, "RayService")["name"]
    kube = plane.kube("llm-local-cpu")
    cluster = f"{name}-x7k2p"
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Progressing", "message": "Waiting for KubeRay to report the RayService status"})

    # A status change that keeps the health status is not an update Argo CD's default install acts on
    # (argocd-cm resource.customizations.ignoreResourceUpdates.all: /status): its message shows at the next
    # refresh.
    cpkit.write_status(kube, name, {
        "conditions": [cpkit.ready("False", "Initializing", "RayService is initializing")],
        "pendingServiceStatus": {"rayClusterName": cluster}})
    argocd.refresh("llm-local-cpu")
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Progressing", "message": f"Initializing: RayService is initializing (RayCluster {cluster})"})

    written = time.monotonic()
    cpkit.write_status(kube, name, {**cpkit.serving_status(cluster), "numServeEndpoints": 1})
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Healthy", "message": "Serving: 1 application(s) RUNNING, 1 serve endpoint(s)"})
    argocd.wait_for("llm-local-cpu Healthy", lambda: status(argocd.app("llm-local-cpu"))["health"]["status"] == "Healthy")
    print(f"status RUNNING written to Application Healthy: {time.monotonic() - written:.1f}s")

    ray_message = "Deploying application llm_app failed: ValueError: max_model_len 2048 exceeds the model's 1024"
    cpkit.write_status(kube, name, {**cpkit.serving_status(cluster, app_state="DEPLOY_FAILED", message=ray_message),
                                    "numServeEndpoints": 1})
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Degraded", "message": f"Serve application llm_app is DEPLOY_FAILED: {ray_message}"})
    argocd.wait_for("llm-local-cpu Degraded", lambda: status(argocd.app("llm-local-cpu"))["health"]["status"] == "Degraded")

    # a point-in-time verdict: Argo CD goes back to Healthy by itself once Serve runs again
    cpkit.write_status(kube, name, {**cpkit.serving_status(cluster), "numServeEndpoints": 1})
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Healthy", "message": "Serving: 1 application(s) RUNNING, 1 serve endpoint(s)"})


def test_a_serve_config_commit_is_synced_into_the_same_rayservice(env):
    plane, server, argocd = env
    kube = plane.kube("llm-local-cpu")
    name = resource(argocd.app("llm-local-cpu"), "RayService")["name"]
    before = kube.get(f"/apis/ray.io/v1/namespaces/llm-local-cpu/rayservices/{name}")
    assert "max_num_seqs: 8" in before["spec"]["serveConfigV2"]

    def edit(work):
        path = work / "overlays/local-cpu/serve-config.yaml"
        path.write_text(path.read_text().replace("max_num_seqs: 8", "max_num_seqs: 4"))

    revision = server.commit("local-cpu: max_num_seqs 4", edit)
    committed = time.monotonic()
    argocd.refresh("llm-local-cpu")  # what a Git webhook does; else the next poll (timeout.reconciliation)
    synced_at(argocd, "llm-local-cpu", revision)
    after = kube.get(f"/apis/ray.io/v1/namespaces/llm-local-cpu/rayservices/{name}")
    print(f"serve config commit to Synced: {time.monotonic() - committed:.1f}s")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, not re-created
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert "max_num_seqs: 4" in after["spec"]["serveConfigV2"]
    assert yaml.safe_load(after["spec"]["serveConfigV2"])["applications"][0]["args"]["llm_configs"][0][
        "engine_kwargs"]["max_num_seqs"] == 4
    # KubeRay has not seen the new spec yet: not Healthy on the old status
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Progressing", "message": f"Waiting for KubeRay to observe generation {after['metadata']['generation']}"})
    cpkit.write_status(kube, name, {**cpkit.serving_status(f"{name}-x7k2p"), "numServeEndpoints": 1})
    rayservice_health(argocd, "llm-local-cpu", {
        "status": "Healthy", "message": "Serving: 1 application(s) RUNNING, 1 serve endpoint(s)"})


# --- replicas -------------------------------------------------------------------------------------------------------

def test_replicas_the_autoscaler_sets_are_not_drift_but_a_hand_edit_is(env):
    """The Ray autoscaler patches the RayCluster KubeRay owns, never the RayService: Argo CD does not track the
    RayCluster, so the app stays Synced without any ignoreDifferences. The same change made to the RayService
    is drift: Argo CD sees it and selfHeal puts git's value back."""
    plane, _, argocd = env
    kube = plane.kube("llm-small")
    name = resource(argocd.app("llm-small"), "RayService")["name"]
    service = kube.get(f"/apis/ray.io/v1/namespaces/llm-small/rayservices/{name}")
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert group["maxReplicas"] > group["replicas"]
    cluster = kube.request("POST", "/apis/ray.io/v1/namespaces/llm-small/rayclusters", body={
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": f"{name}-x7k2p", "labels": {"ray.io/originated-from-cr-name": name,
                                                         "ray.io/originated-from-crd": "RayService"},
                     "ownerReferences": [{"apiVersion": "ray.io/v1", "kind": "RayService", "name": name,
                                          "uid": service["metadata"]["uid"], "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": service["spec"]["rayClusterConfig"]})
    kube.request("PATCH", f"/apis/ray.io/v1/namespaces/llm-small/rayclusters/{cluster['metadata']['name']}",
                 content_type="application/json-patch+json",
                 body=[{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": group["maxReplicas"]}])
    before = status(argocd.app("llm-small")).get("reconciledAt")
    argocd.refresh("llm-small")
    app = argocd.wait_for("llm-small compared after the autoscaler's patch", lambda: (
        a if (a := argocd.app("llm-small")) and status(a).get("reconciledAt") != before
        and "argocd.argoproj.io/refresh" not in (a["metadata"].get("annotations") or {}) else None))
    assert status(app)["sync"]["status"] == "Synced"
    assert not any(r["kind"] == "RayCluster" for r in status(app)["resources"])

    kube.request("PATCH", f"/apis/ray.io/v1/namespaces/llm-small/rayservices/{name}",
                 content_type="application/json-patch+json",
                 body=[{"op": "replace", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/replicas",
                        "value": group["maxReplicas"]}])
    argocd.wait_for("selfHeal restores git's replicas on the RayService", lambda: (
        (live := kube.get(f"/apis/ray.io/v1/namespaces/llm-small/rayservices/{name}"))
        ["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] == group["replicas"]
        and live["metadata"]["generation"] > service["metadata"]["generation"] + 1))
    history = status(argocd.app("llm-small")).get("operationState") or {}
    assert history.get("phase") == "Succeeded" and (history.get("operation") or {}).get("initiatedBy", {}).get(
        "automated"), history


def test_a_git_change_of_worker_replicas_is_applied(env):
    """Without ignoreDifferences/RespectIgnoreDifferences git's replicas reach the RayService (with them, Argo CD
    reported Synced and left the old value: the change was silently dropped)."""
    plane, server, argocd = env
    kube = plane.kube("llm-small")
    name = resource(argocd.app("llm-small"), "RayService")["name"]
    live = kube.get(f"/apis/ray.io/v1/namespaces/llm-small/rayservices/{name}")
    wanted = live["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] + 1

    def edit(work):
        with open(work / "overlays/small/worker-gpus.yaml", "a") as patch:
            patch.write(f"- op: add\n  path: /spec/rayClusterConfig/workerGroupSpecs/0/replicas\n  value: {wanted}\n")

    revision = server.commit(f"small: {wanted} workers to start with", edit)
    argocd.refresh("llm-small")
    synced_at(argocd, "llm-small", revision)
    live = kube.get(f"/apis/ray.io/v1/namespaces/llm-small/rayservices/{name}")
    assert live["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] == wanted


# --- projects -------------------------------------------------------------------------------------------------------

def test_an_overlay_cannot_create_a_cluster_role_binding(env):
    plane, server, argocd = env
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "llm-small-admin"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "llm-small"}]}

    def edit(work):
        (work / "overlays/small/admin.yaml").write_text(yaml.safe_dump(binding))
        kustomization = work / "overlays/small/kustomization.yaml"
        data = yaml.safe_load(kustomization.read_text())
        data["resources"] = [*data.get("resources", []), "admin.yaml"]
        kustomization.write_text(yaml.safe_dump(data, sort_keys=False))

    server.commit("small: bind cluster-admin", edit)
    argocd.refresh("llm-small")
    op = argocd.wait_for("llm-small's sync refused", lambda: (
        o if "ClusterRoleBinding" in (o := status(argocd.app("llm-small")).get("operationState") or {}).get(
            "message", "") else None), timeout=SYNC_TIMEOUT_S)
    assert "resource rbac.authorization.k8s.io:ClusterRoleBinding is not permitted in project kuberay-llm" in \
        op["message"], op["message"]
    assert plane.kube().get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/llm-small-admin") is None


# --- the operator's CRDs -------------------------------------------------------------------------------------------

def test_the_kuberay_crds_sync_only_server_side(env):
    """Why argocd/kuberay-operator.yaml sets ServerSideApply=true: Argo CD's client-side apply stores the whole
    object in the last-applied annotation, which the RayService CRD of the pinned KubeRay overflows. The CRD
    comes from the pinned module (localcluster.kuberay_crd_dir), committed to the test's repository only, and
    is synced by an Application of the test in the built-in project (the chart's repository is out of reach)."""
    from localcluster import kuberay_crd_dir

    plane, server, argocd = env

    def add_crd(work):
        # under another group, so it is a new object next to the installed ray.io one (same size)
        crd = yaml.safe_load((kuberay_crd_dir() / "ray.io_rayservices.yaml").read_text())
        crd["metadata"]["name"] = crd["metadata"]["name"].replace(".ray.io", ".ray.example.com")
        crd["spec"]["group"] = "ray.example.com"
        (work / "crds").mkdir()
        (work / "crds" / "rayservices.yaml").write_text(yaml.safe_dump(crd))

    revision = server.commit("the KubeRay RayService CRD, for the server-side apply test", add_crd)

    def crd_app(name: str, options: list[str]) -> dict:
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"project": "default",
                         "source": {"repoURL": server.url, "targetRevision": "main", "path": "crds"},
                         "destination": {"server": "https://kubernetes.default.svc"},
                         "syncPolicy": {"automated": {}, "syncOptions": options}}}

    argocd.apply(crd_app("crds-client-side", []))
    op = argocd.wait_for("client-side apply of the CRD fails", lambda: (
        o if (o := status(argocd.app("crds-client-side")).get("operationState") or {}).get("syncResult")
        and "Too long" in o.get("message", "") + str(o["syncResult"].get("resources")) else None),
        timeout=SYNC_TIMEOUT_S)
    result = op["syncResult"]["resources"][0]
    assert result["status"] == "SyncFailed"
    assert result["message"] == ('CustomResourceDefinition.apiextensions.k8s.io "rayservices.ray.example.com" is '
                                 "invalid: metadata.annotations: Too long: may not be more than 262144 bytes")
    plane.kube().request("DELETE", f"{ARGO}/applications/crds-client-side")

    argocd.apply(crd_app("crds-server-side", ["ServerSideApply=true"]))
    app = synced_at(argocd, "crds-server-side", revision)
    assert status(app)["operationState"]["phase"] == "Succeeded", status(app)["operationState"]
