"""Components compose with every tier: each component alone on three kinds of overlay, and on every overlay the
largest compatible sets of components (together holding every component) in two opposite orders, render with the pinned kustomize, render the same whichever the order, and are
accepted by a real kube-apiserver under strict field validation (dry run). The pairs preflight/hardening.py names
as incompatible fail, with a message that names them. The chart's features do the same for every ci scenario.
The harness Role can apply every kind the components render.

Rendering is in-process cached: each kustomize build runs once for the whole module."""

from __future__ import annotations

import concurrent.futures
import os
import dataclasses
import functools
import json
import uuid
from pathlib import Path

import pytest
import yaml

from hardening_helpers import COMPONENTS_DIR, REPO, kustomize, wrapper_overlay
from kuberay_llm.group_guards import patches_of
from kuberay_llm.preflight import hardening

OVERLAYS = sorted(p.parent.name for p in (REPO / "overlays").glob("*/kustomization.yaml"))
# serve-config is the mechanism every overlay already uses, not an opt-in feature.
COMPONENTS = sorted(p.parent.name for p in COMPONENTS_DIR.glob("*/kustomization.yaml") if p.parent.name != "serve-config")
# A component that includes another (kustomize `components:` of a Component).
INCLUDES = {c: set(yaml.safe_load((COMPONENTS_DIR / c / "kustomization.yaml").read_text()).get("components") or [])
            for c in COMPONENTS}


# Each component alone on a GPU tier, the CPU tier and an overlay built on another (the largest sets below run on
# every overlay and hold every component, so these add what a component does without the others).
SINGLES_ON = ("small", "local-cpu", "gke-a3-deepseek")


def components_of_overlay(name: str) -> set[str]:
    """The components an overlay lists itself or through the overlays it builds on."""
    found, todo = set(), [REPO / "overlays" / name]
    while todo:
        directory = todo.pop()
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        found |= {Path(c).name for c in kustomization.get("components") or []}
        todo += [(directory / r).resolve() for r in kustomization.get("resources") or []
                 if (directory / r / "kustomization.yaml").exists() and "manifests/base" not in r]
    return found


def includes(component: str) -> set[str]:
    return {Path(c).name for c in INCLUDES.get(component, ())}


@functools.cache
def worker_groups(overlay: str) -> tuple[str, ...]:
    from kuberay_llm.render import render_overlay

    rayservice = next(o for o in render_overlay(overlay).objects if o["kind"] == "RayService")
    return tuple(g["groupName"] for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"])


def shapes_a_group_the_overlay_lacks(component: str, overlay: str) -> bool:
    """The component's JSON patches test for a worker group name (gpu-group) that the overlay does not have at that
    index (local-cpu's cpu-group): kustomize refuses it, as tests/test_worker_group_names.py checks."""
    groups = worker_groups(overlay)
    for _, ops in patches_of(COMPONENTS_DIR / component):
        for op in ops if isinstance(ops, list) else []:
            if isinstance(op, dict) and op.get("op") == "test" and op.get("path", "").endswith("/groupName"):
                index = int(op["path"].split("/")[-2])
                if index >= len(groups) or groups[index] != op.get("value"):
                    return True
    return False


def addable(overlay: str) -> list[str]:
    """Components the overlay does not have yet and that may go with the ones it has (and with its worker groups)."""
    present = components_of_overlay(overlay)
    return [c for c in COMPONENTS if c not in present
            and not any(c in pair and pair & present for pair in hardening.INCOMPATIBLE)
            and not shapes_a_group_the_overlay_lacks(c, overlay)]


def maximal_sets(overlay: str) -> list[list[str]]:
    """Large sets of components that may go together on this overlay: one side of every incompatible pair in the
    first, the other side in the second, so each component is in at least one."""
    free = addable(overlay)
    choices = [sorted(pair) for pair in hardening.INCOMPATIBLE]
    sets = []
    for side in (0, 1):
        dropped = {pair[1 - side] for pair in choices}
        chosen = [c for c in free if c not in dropped]
        if chosen not in sets:
            sets.append(chosen)
    return sets


@dataclasses.dataclass
class Render:
    returncode: int
    stderr: str
    objects: list


def _parse(text: str) -> list[dict]:
    return [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]


@pytest.fixture(scope="module")
def renders(tmp_path_factory, request):
    """(overlay, components tuple) -> Render of kustomize build, for every combination the tests use."""
    if any(item.get_closest_marker("controlplane") for item in request.session.items
           if item.module is request.module):
        request.getfixturevalue("hardening_plane_starting")  # starts while the combinations render
    root = tmp_path_factory.mktemp("compose")
    jobs = []
    for overlay in OVERLAYS:
        if overlay in SINGLES_ON:
            jobs += [(overlay, (c,)) for c in addable(overlay)]
        for chosen in maximal_sets(overlay):
            jobs += [(overlay, tuple(chosen)), (overlay, tuple(reversed(chosen)))]
    jobs += [("small", tuple(sorted(pair))) for pair in hardening.INCOMPATIBLE]
    jobs = list(dict.fromkeys(jobs))

    def build(job):
        overlay, comps = job
        done = kustomize(wrapper_overlay(root, overlay, list(comps), name=f"{overlay}-{uuid.uuid4().hex[:8]}"))
        return job, Render(done.returncode, done.stderr, _parse(done.stdout) if done.returncode == 0 else [])

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(build, jobs))


def _normalised(node):
    """Lists of named items sorted by name (the order components append them in is not significant)."""
    if isinstance(node, dict):
        return {k: _normalised(v) for k, v in node.items()}
    if isinstance(node, list):
        items = [_normalised(v) for v in node]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return items
    return node


def _by_id(objects: list[dict]) -> dict:
    return {(o["kind"], o["metadata"]["name"]): _normalised(o) for o in objects}


def test_there_are_components_and_overlays_to_compose():
    assert {"network-policy", "pod-security", "ray-auth", "gcs-fault-tolerance", "model-cache", "gke-gcsfuse",
            "monitoring", "grafana-dashboards"} <= set(COMPONENTS)
    assert len(OVERLAYS) >= 5


@pytest.mark.slow  # the renders fixture: ~60 kustomize builds of overlay x components (~13 s on 2 cores)
def test_every_component_alone_renders(renders):
    failed = [f"overlays/{o} + {c[0]}: {r.stderr.strip().splitlines()[-1]}" for (o, c), r in renders.items()
              if len(c) == 1 and r.returncode != 0]
    assert not failed, "\n".join(failed)


def test_only_the_gpu_group_components_are_left_out_of_the_cpu_tier_and_they_fail_loudly(tmp_path):
    """local-cpu's one worker group is cpu-group: gke-a3, gke-a3-mega and gke-gcsfuse shape gpu-group by index, so
    they are not composed with it above; kustomize refuses them with the guard's error rather than shaping it."""
    skipped = [c for c in COMPONENTS if shapes_a_group_the_overlay_lacks(c, "local-cpu")]
    assert skipped == ["gke-a3", "gke-a3-mega", "gke-gcsfuse"]
    assert not any(shapes_a_group_the_overlay_lacks(c, "small") for c in COMPONENTS)
    for component in skipped:
        done = kustomize(wrapper_overlay(tmp_path, "local-cpu", [component], name=f"cpu-{component}"))
        assert done.returncode != 0 and "workerGroupSpecs/0/groupName failed: test failed" in done.stderr, done.stderr


@pytest.mark.slow
def test_the_largest_compatible_sets_render_the_same_in_either_order(renders):
    problems = []
    for overlay in OVERLAYS:
        for chosen in maximal_sets(overlay):
            forward, backward = renders[(overlay, tuple(chosen))], renders[(overlay, tuple(reversed(chosen)))]
            if forward.returncode or backward.returncode:
                problems.append(f"overlays/{overlay} + {', '.join(chosen)}: {(forward.stderr or backward.stderr).strip()}")
                continue
            a, b = _by_id(forward.objects), _by_id(backward.objects)
            if a != b:
                differing = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                problems.append(f"overlays/{overlay} + {', '.join(chosen)}: order changes {differing}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_each_component_adds_what_it_says_and_keeps_the_pod_labels(renders):
    """A component never drops what the tier had: the stable pod label survives every combination."""
    for (overlay, comps), result in renders.items():
        if result.returncode:
            continue
        for o in result.objects:
            if o["kind"] != "RayService":
                continue
            cluster = o["spec"]["rayClusterConfig"]
            for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
                labels = (group["template"].get("metadata") or {}).get("labels") or {}
                assert labels.get(hardening.INSTANCE_LABEL) == o["metadata"]["name"], (overlay, comps)


@pytest.mark.slow
def test_incompatible_pairs_are_named(renders):
    """Each pair of hardening.INCOMPATIBLE fails: at kustomize (a duplicated object) or in preflight, by name."""
    from kuberay_llm import render, validate

    for pair in hardening.INCOMPATIBLE:
        result = renders[("small", tuple(sorted(pair)))]
        if result.returncode:
            # kustomize refuses a component listed twice (one includes the other): its message names the object
            assert any(includes(c) & pair for c in pair), (sorted(pair), result.stderr)
            assert "may not add resource with an already registered id" in result.stderr
            continue
        rendered = render.Rendered(source="pair", objects=result.objects)
        messages = [str(f) for f in validate.check_rendered(rendered)]
        a, b = sorted(pair)
        assert any(f"components {a} + {b}: cannot go together" in m for m in messages), messages


@pytest.mark.slow
def test_the_harness_role_can_apply_every_kind_the_components_render(renders):
    role = yaml.safe_load((REPO / "deploy" / "rbac" / "role.yaml").read_text())
    allowed = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                allowed.setdefault((group, resource), set()).update(rule["verbs"])
    missing = set()
    for result in renders.values():
        for o in result.objects:
            group = o["apiVersion"].rpartition("/")[0]
            plural = o["kind"].lower() + ("es" if o["kind"].endswith("s") else "s")
            plural = {"networkpolicys": "networkpolicies"}.get(plural, plural)
            if o["kind"] == "PersistentVolume":
                continue  # cluster-scoped: gke-gcsfuse's README step is for a cluster admin
            if not {"get", "create", "patch"} <= allowed.get((group, plural), set()):
                missing.add(f"{group or 'core'}/{plural}")
    assert not missing, f"deploy/rbac/role.yaml cannot apply: {sorted(missing)}"


# --- the real API server ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(renders, hardening_plane_starting):
    from apiserver_helpers import create_namespace

    try:
        plane = hardening_plane_starting.result()
    except RuntimeError as err:
        pytest.fail(f"local control plane did not start: {err}", pytrace=False)
    kube = plane.kube("compose")
    create_namespace(kube, "compose")
    return kube


def _dry_run_all(kube, objects_by_source: dict[str, list[dict]]) -> list[str]:
    from apiserver_helpers import dry_run_create

    seen, refused = {}, []
    for source, objects in objects_by_source.items():
        for o in objects:
            key = json.dumps(o, sort_keys=True)
            if key not in seen:
                seen[key] = dry_run_create(kube, "compose", o)
            if seen[key]:
                refused.append(f"{source}: {o['kind']}/{o['metadata']['name']}: {seen[key]}")
    return refused


@pytest.mark.controlplane
def test_every_rendered_combination_passes_the_api_server_under_strict(renders, api):
    sources = {f"overlays/{o} + {', '.join(c)}": r.objects for (o, c), r in renders.items()
               if r.returncode == 0 and not any(pair <= set(c) for pair in hardening.INCOMPATIBLE)}
    refused = _dry_run_all(api, sources)
    assert not refused, "\n".join(refused[:20])


CHART_FEATURES = {
    "pvc": ["podSecurity.enabled=true", "rayAuth.enabled=true", "gcsFaultTolerance.enabled=true",
            "modelCache.enabled=true", "monitoring.enabled=true", "grafanaDashboards.enabled=true",
            "networkPolicy.enabled=true"],
    "gcsfuse": ["modelCache.enabled=true", "modelCache.storage=gcsfuse", "modelCache.bucket=my-models",
                "monitoring.enabled=true"],
}


@functools.cache
def chart_render(scenario: str, features: str) -> list[dict]:
    import subprocess

    from test_chart_parity import CHART, RELEASE, _tool

    args = [str(_tool("helm")), "template", RELEASE, str(CHART), "-f", str(CHART / "ci" / scenario)]
    for s in CHART_FEATURES[features]:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return _parse(out)


@pytest.mark.controlplane
def test_every_chart_scenario_with_every_feature_passes_the_api_server_under_strict(api):
    from test_chart_parity import CHART

    scenarios = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
    sources = {f"{s} + {f}": chart_render(s, f) for s in scenarios for f in CHART_FEATURES}
    kinds = {o["kind"] for objects in sources.values() for o in objects}
    assert {"NetworkPolicy", "PersistentVolumeClaim", "Job", "PodMonitor", "PrometheusRule", "ConfigMap",
            "PersistentVolume", "ServiceAccount", "RayService"} <= kinds
    refused = _dry_run_all(api, sources)
    assert not refused, "\n".join(refused[:20])


@pytest.mark.controlplane
def test_the_api_server_refuses_what_preflight_calls_a_duplicate(api, renders):
    """The duplicate env of gke-a3 + gke-a3-mega, which preflight reports, is what the API server refuses."""
    from apiserver_helpers import dry_run_create

    result = renders[("small", ("gke-a3", "gke-a3-mega"))]
    rayservice = next(o for o in result.objects if o["kind"] == "RayService")
    message = dry_run_create(api, "compose", rayservice)
    assert message and "Duplicate value" in message and "LD_LIBRARY_PATH" in message, message


def test_components_reach_every_worker_group_not_just_the_first(tmp_path, overlay_copy):
    """A tier with two worker groups (built here from small without its pod-security) gets pod-security,
    model-cache and hf-token on both."""
    from hardening_helpers import remove_component

    small = overlay_copy("small")
    remove_component(small, "pod-security")
    two = tmp_path / "two-groups"
    two.mkdir()
    (two / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(small, two)],
        "patches": [{"target": {"kind": "RayService"}, "patch": yaml.safe_dump([{
            "op": "add", "path": "/spec/rayClusterConfig/workerGroupSpecs/-",
            "value": {"groupName": "spare", "replicas": 0, "minReplicas": 0, "maxReplicas": 1, "rayStartParams": {},
                      "template": {"metadata": {"labels": {hardening.INSTANCE_LABEL: "llama-8b"}},
                                   "spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray-llm:x"}]}}}}])}],
    }))
    wrapped = tmp_path / "on-two"
    wrapped.mkdir()
    (wrapped / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../two-groups"],
        "components": [str(Path("..") / os.path.relpath(COMPONENTS_DIR / c, tmp_path))
                       for c in ("pod-security", "model-cache", "hf-token")]}))
    result = kustomize(wrapped)
    assert result.returncode == 0, result.stderr
    rayservice = next(o for o in _parse(result.stdout) if o["kind"] == "RayService")
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        spec = group["template"]["spec"]
        ray = next(c for c in spec["containers"] if c["name"] == "ray-worker")
        assert ray["securityContext"]["allowPrivilegeEscalation"] is False, group["groupName"]
        assert [e["name"] for e in ray["env"]].count("HF_TOKEN") == 1, group["groupName"]
        assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in ray["volumeMounts"]
        assert [c["name"] for c in spec["initContainers"]] == ["wait-for-model-cache"]
