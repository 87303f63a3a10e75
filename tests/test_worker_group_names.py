"""Worker groups by name: every JSON patch that addresses `workerGroupSpecs/<i>` tests that group's name first
(manifests/base/kustomization.yaml), so a group added before gpu-group fails the build, naming the patches to fix,
instead of shaping the wrong group."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from kuberay_llm import group_guards, toolchain
from kuberay_llm.group_guards import GROUPS, guard_op, unguarded_ops

REPO = Path(__file__).resolve().parents[1]
# where the repository keeps kustomizations and their patches (deploy/ and argocd/ included)
ROOTS = ("manifests", "overlays", "deploy", "argocd", "charts", "bench", "hack")
INDEXED = re.compile(re.escape(GROUPS) + r"/\d+")


def patch_files() -> dict[Path, list]:
    """Every YAML file of the repository that is a JSON patch touching worker groups by index, and every inline
    patch of a kustomization (keyed by the kustomization file and its position)."""
    found: dict[Path, list] = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.y*ml")):
            text = path.read_text()
            if not INDEXED.search(text):
                continue
            try:
                docs = [d for d in yaml.safe_load_all(text) if d is not None]
            except yaml.YAMLError:
                continue
            for doc in docs:
                if isinstance(doc, list) and any(isinstance(op, dict) and "op" in op for op in doc):
                    found[path] = doc
                if isinstance(doc, dict) and doc.get("kind") in ("Kustomization", "Component"):
                    for i, patch in enumerate(doc.get("patches") or []):
                        if isinstance(patch, dict) and INDEXED.search(str(patch.get("patch", ""))):
                            found[path.with_name(f"{path.name}#patches[{i}]")] = yaml.safe_load(patch["patch"])
    return found


def test_every_index_addressed_worker_group_op_follows_a_guard_for_its_group():
    files = patch_files()
    # the tiers' worker shapes and the GPU components are all here; the scan found them
    assert {p.relative_to(REPO).as_posix() for p in files} >= {
        "overlays/small/worker-gpus.yaml", "overlays/local-cpu/cpu-worker.yaml", "manifests/components/gke-a3/tcpx.yaml"}
    unguarded = {p.relative_to(REPO).as_posix(): unguarded_ops(ops) for p, ops in files.items() if unguarded_ops(ops)}
    assert unguarded == {}, ("these ops address a worker group by index with no `op: test` on its groupName before "
                             f"them (see manifests/base/kustomization.yaml): {unguarded}")


def test_every_guard_names_the_base_group():
    for path, ops in patch_files().items():
        guards = [op for op in ops if op.get("op") == "test" and op["path"].endswith("/groupName")]
        assert guards and all(g == guard_op(0, "gpu-group") for g in guards), path


def test_the_checker_catches_a_missing_a_late_and_a_wrong_index_guard():
    op = {"op": "add", "path": f"{GROUPS}/0/template/spec/nodeSelector", "value": {}}
    assert unguarded_ops([op]) == [op["path"]]
    assert unguarded_ops([op, guard_op(0, "gpu-group")]) == [op["path"]]
    assert unguarded_ops([guard_op(1, "gpu-group"), op]) == [op["path"]]
    assert unguarded_ops([guard_op(0, "gpu-group"), op]) == []
    assert unguarded_ops([{"op": "add", "path": f"{GROUPS}/-", "value": {}}]) == []  # appends a group: no index


def test_the_generated_overlays_guard_each_group(tmp_path):
    """cluster/tiny_overlay.py's patches (the local cluster's and e2e-gpu's overlays) guard every group they touch."""
    from kuberay_llm.cluster.tiny_overlay import mount_ops

    def group(name=None):
        return {**({"groupName": name} if name else {}), "template": {"spec": {"containers": [{}]}}}

    rayservice = {"spec": {"rayClusterConfig": {"headGroupSpec": group(),
                                                "workerGroupSpecs": [group("gpu-group"), group("spare")]}}}
    ops = mount_ops(rayservice, "/models")
    assert unguarded_ops(ops) == []
    assert [op for op in ops if op["op"] == "test"] == [guard_op(0, "gpu-group"), guard_op(1, "spare")]


def test_e2e_gpu_guards_the_group_it_patches():
    source = (REPO / "bench/gpu/e2e_gpu.py").read_text()
    patched = source.index("workerGroupSpecs/0/template")
    assert 'guard_op(0, "gpu-group")' in source[:patched]


@pytest.fixture
def base_with_a_group_before_gpu_group(overlay_copy):
    """A copy of manifests/ and overlays/ whose base has a second worker group inserted before gpu-group."""
    overlay_copy("small")
    root = overlay_copy("small").parent.parent
    base = root / "manifests/base/rayservice.yaml"
    doc = yaml.safe_load(base.read_text())
    doc["spec"]["rayClusterConfig"]["workerGroupSpecs"].insert(0, {
        "groupName": "cpu-spare", "replicas": 0, "minReplicas": 0, "maxReplicas": 1, "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray-llm"}]}}})
    base.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def _kustomize(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(toolchain.tool("kustomize")), "build", "--load-restrictor", "LoadRestrictionsNone",
                           str(directory)], capture_output=True, text=True, timeout=120, check=False)


def test_a_group_inserted_before_gpu_group_fails_every_overlay_that_patches_it(base_with_a_group_before_gpu_group):
    root = base_with_a_group_before_gpu_group
    for kustomization in sorted((root / "overlays").glob("*/kustomization.yaml")):
        proc = _kustomize(kustomization.parent)
        assert proc.returncode != 0, f"{kustomization.parent.name} built with a group before gpu-group"
        assert f"{GROUPS}/0/groupName failed: test failed" in proc.stderr, proc.stderr


def test_each_gpu_component_fails_alone_on_a_group_before_gpu_group(base_with_a_group_before_gpu_group, tmp_path):
    """The components are checked without a tier's patch failing first: each on the bare base copy."""
    root = base_with_a_group_before_gpu_group
    for name in ("gke-a3", "gke-a3-mega"):
        wrapper = tmp_path / f"on-{name}"
        wrapper.mkdir()
        (wrapper / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(root / "manifests/base", wrapper)],
            "components": [os.path.relpath(root / "manifests/components" / name, wrapper)]}))
        proc = _kustomize(wrapper)
        assert proc.returncode != 0 and "test failed" in proc.stderr, (name, proc.stderr)


def test_components_that_select_by_name_reach_the_inserted_group_too(base_with_a_group_before_gpu_group, tmp_path):
    """hf-token, pod-security, high-throughput and one-zone are replacements by name: no index to go wrong."""
    root = base_with_a_group_before_gpu_group
    wrapper = tmp_path / "by-name"
    wrapper.mkdir()
    (wrapper / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(root / "manifests/base", wrapper)],
        "components": [os.path.relpath(root / "manifests/components" / name, wrapper)
                       for name in ("hf-token", "pod-security", "high-throughput", "one-zone")]}))
    proc = _kustomize(wrapper)
    assert proc.returncode == 0, proc.stderr
    rayservice = next(d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "RayService")
    groups = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu-spare", "gpu-group"]
    for group in groups:
        env = {e["name"] for e in group["template"]["spec"]["containers"][0]["env"]}
        assert {"HF_TOKEN", "RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY",
                "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"} <= env, group["groupName"]
        assert group["template"]["spec"]["affinity"]["podAffinity"], group["groupName"]


def test_validate_names_the_overlay_the_patches_and_the_fix(base_with_a_group_before_gpu_group, capsys):
    from overlay_helpers import validate

    root = base_with_a_group_before_gpu_group
    code, out = validate(capsys, root / "overlays/small")
    assert code == 2
    assert (f"error: {root / 'overlays/small'}: kustomize-v5.8.1 failed: Error: testing value "
            f"{GROUPS}/0/groupName failed: test failed; worker group 0 is not the group its JSON patches were "
            f"written for ({root / 'overlays/small/worker-gpus.yaml'} expect gpu-group): a group was added before "
            "it, or the groups were reordered or renamed; fix: keep that group at index 0, or change the index in "
            "those patches (and in their `op: test` on groupName) to where the group now is "
            "(manifests/base/kustomization.yaml, \"Worker groups by name\")") in out, out


def test_the_hint_covers_a_guard_whose_group_is_missing():
    error = f"Error: test operation does not apply: is missing path: {GROUPS}/1/groupName: missing value"
    hint = group_guards.failed_guard_hint(error, REPO / "overlays/small")
    assert hint and hint.startswith("worker group 1 is not the group its JSON patches were written for: ")
    assert group_guards.failed_guard_hint("Error: some other failure", REPO / "overlays/small") is None
