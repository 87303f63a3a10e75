"""Preflight's structure checks (preflight/structure.py, the image rule of preflight/pod_rules.py): what the strict
schema lets through and the API server or kubectl refuses. Each case is the rendered small overlay with one change,
validated as a manifest file with the real pinned kubeconform; each asserts the whole message."""

from __future__ import annotations

import copy

import pytest
import yaml

from overlay_helpers import validate as validate_cli
from preflight_cases import lines, run_cases
from kuberay_llm import render
from kuberay_llm.preflight import upstream

INT32_MAX = 2 ** 31 - 1
WORKER = "spec.rayClusterConfig.workerGroupSpecs[0]"


CASES: dict = {}  # case name -> change(objects, rayservice) of the rendered small overlay


def worker(rs: dict) -> dict:
    return rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


@pytest.fixture(scope="module")
def small() -> list[dict]:
    return render.render_overlay("small").objects


@pytest.fixture(scope="module")
def results(small, tmp_path_factory) -> dict:
    """{case: (exit code, its findings as printed)}, every case validated in one run."""
    return run_cases({name: ("small", change) for name, change in CASES.items()}, {"small": small},
                     tmp_path_factory.mktemp("structure"))


def errors(results, name: str) -> list[str]:
    return lines(results, name, code=1)


def _set(path: str, value):
    """A change that sets one field of the RayService (`a.b[0].c`)."""
    def change(objects, rs):
        node, parts = rs, path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value

    return change


def _pop(path: str):
    def change(objects, rs):
        node, parts = rs, path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node.pop(parts[-1])

    return change


CASES.update({
    "unchanged": lambda objects, rs: None,
    **{f"{key}-1e30": _set(f"{WORKER}.{key}", 10 ** 30)
       for key in ("replicas", "minReplicas", "maxReplicas", "numOfHosts")},
    "maxReplicas-int32-max+1": _set(f"{WORKER}.maxReplicas", INT32_MAX + 1),
    "maxReplicas-int32-max": _set(f"{WORKER}.maxReplicas", INT32_MAX),
    "minReplicas-below-int32": _set(f"{WORKER}.minReplicas", -(2 ** 31) - 1),
    "grace-period-2^40": _set(f"{WORKER}.template.spec.terminationGracePeriodSeconds", 2 ** 40),
    "grace-period-2^63": _set(f"{WORKER}.template.spec.terminationGracePeriodSeconds", 2 ** 63),
    "networkpolicy-port-1e12": lambda objects, rs: objects[0]["spec"]["ingress"][1]["ports"][0].update(port=10 ** 12),
    "no-metadata": lambda objects, rs: rs.pop("metadata"),
    "no-name": _pop("metadata.name"),
    "generate-name": lambda objects, rs: rs["metadata"].update(generateName=rs["metadata"].pop("name") + "-"),
    "networkpolicy-no-name": lambda objects, rs: objects[0]["metadata"].pop("name"),
    "kind-Rayservice": lambda objects, rs: rs.update(kind="Rayservice"),
    "kind-Networkpolicy": lambda objects, rs: objects[0].update(kind="Networkpolicy"),
    "worker-no-image": _pop(f"{WORKER}.template.spec.containers[0].image"),
    "head-empty-image": _set("spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].image", ""),
    # hardened as the tier's Ray container is (pod-security is on by default): only the image is missing
    "sidecar-no-image": lambda objects, rs: worker(rs)["template"]["spec"]["containers"].append(
        {"name": "log-shipper", "securityContext": worker(rs)["template"]["spec"]["containers"][0]["securityContext"]}),
})


def test_the_unchanged_copy_passes(results):
    assert results["unchanged"] == (0, [])


# --- integers within their OpenAPI format ----------------------------------------------------------------


@pytest.mark.parametrize("key", ["replicas", "minReplicas", "maxReplicas", "numOfHosts"])
def test_worker_group_integer_beyond_int32(results, key):
    assert errors(results, f"{key}-1e30") == [
        f"error: {key}-1e30.yaml: RayService/llama-8b: {WORKER}.{key}=1000000000000000000000000000000: must be of "
        "type integer with format int32 (-2147483648 to 2147483647): the API server refuses the object; fix: use a "
        "value of at most 2147483647"]


def test_one_past_int32_fails_and_int32_max_passes(results):
    assert errors(results, "maxReplicas-int32-max+1") == [
        f"error: maxReplicas-int32-max+1.yaml: RayService/llama-8b: {WORKER}.maxReplicas=2147483648: must be of type "
        "integer with format int32 (-2147483648 to 2147483647): the API server refuses the object; fix: use a value "
        "of at most 2147483647"]
    assert results["maxReplicas-int32-max"] == (0, [])


def test_below_int32(results):
    assert errors(results, "minReplicas-below-int32") == [
        f"error: minReplicas-below-int32.yaml: RayService/llama-8b: {WORKER}.minReplicas=-2147483649: must be of type "
        "integer with format int32 (-2147483648 to 2147483647): the API server refuses the object; fix: use a value "
        "of at least -2147483648"]


def test_an_int64_field_holds_more_than_int32(results):
    """terminationGracePeriodSeconds is int64 upstream: 2^40 is in range (the format is read, not assumed)."""
    assert results["grace-period-2^40"] == (0, [])


def test_an_int64_field_beyond_int64(results):
    assert errors(results, "grace-period-2^63") == [
        f"error: grace-period-2^63.yaml: RayService/llama-8b: {WORKER}.template.spec.terminationGracePeriodSeconds="
        "9223372036854775808: must be of type integer with format int64 (-9223372036854775808 to "
        "9223372036854775807): the API server refuses the object; fix: use a value of at most 9223372036854775807"]


def test_int_or_string_port_of_a_core_object_holds_an_int32(results):
    assert errors(results, "networkpolicy-port-1e12") == [
        "error: networkpolicy-port-1e12.yaml: NetworkPolicy/ray-llm-cluster: spec.ingress[1].ports[0].port="
        "1000000000000: must be of type integer with format int32 (-2147483648 to 2147483647): the API server "
        "refuses the object; fix: use a value of at most 2147483647"]


def test_the_kuberay_crd_declares_these_fields_int32():
    """The facts the rule reads, from the pinned CRD itself (KubeRay config/crd/bases/ray.io_rayservices.yaml)."""
    up = upstream.load()
    assert up.missing == []
    schema = up.schema("ray.io/v1", "RayService")
    group = schema["properties"]["spec"]["properties"]["rayClusterConfig"]["properties"]["workerGroupSpecs"]["items"]
    for key in ("replicas", "minReplicas", "maxReplicas", "numOfHosts"):
        assert group["properties"][key] == {**group["properties"][key], "type": "integer", "format": "int32"}


# --- metadata.name ---------------------------------------------------------------------------------------

REQUIRED = ("Required value: name or generateName is required (the API server refuses the object, and apply cannot "
            "address it); fix: add metadata.name to the")


def test_rayservice_without_metadata(results):
    assert errors(results, "no-metadata") == [
        f"error: no-metadata.yaml: RayService/(no name): metadata: {REQUIRED} RayService (lower-case letters, digits "
        "and '-')"]


def test_a_nameless_rayservice_is_never_reported_ok(small, capsys, tmp_path, monkeypatch):
    objects = copy.deepcopy(small)
    next(o for o in objects if o["kind"] == "RayService")["metadata"].pop("name")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nameless.yaml").write_text(yaml.safe_dump_all(objects))
    code, out = validate_cli(capsys, "nameless.yaml")
    assert code == 1
    assert "INVALID nameless.yaml (" in out and not any(line.startswith("ok ") for line in out.splitlines())


def test_rayservice_without_a_name(results):
    assert errors(results, "no-name") == [
        f"error: no-name.yaml: RayService/(no name): metadata.name: {REQUIRED} RayService (lower-case letters, digits "
        "and '-')"]


def test_generate_name_alone_cannot_be_applied(results):
    assert errors(results, "generate-name") == [
        "error: generate-name.yaml: RayService/(no name): metadata.name: is missing and generateName=llama-8b- names "
        "an object only when it is created: apply addresses the object by its name (resource name may not be "
        "empty); fix: set metadata.name on the RayService"]


def test_any_object_without_a_name(results):
    assert errors(results, "networkpolicy-no-name") == [
        f"error: networkpolicy-no-name.yaml: NetworkPolicy/(no name): metadata.name: {REQUIRED} NetworkPolicy "
        "(lower-case letters, digits and '-')"]


# --- exact-case kinds ------------------------------------------------------------------------------------


def test_kind_spelled_in_the_wrong_case(results):
    assert errors(results, "kind-Rayservice") == [
        'error: kind-Rayservice.yaml: Rayservice/llama-8b: kind=Rayservice: no matches for kind "Rayservice" in '
        'version "ray.io/v1": kinds are case-sensitive, and kubectl and the API server know it as RayService; fix: '
        "spell it kind: RayService"]


def test_core_kind_spelled_in_the_wrong_case(results):
    assert errors(results, "kind-Networkpolicy") == [
        'error: kind-Networkpolicy.yaml: Networkpolicy/ray-llm-cluster: kind=Networkpolicy: no matches for kind '
        '"Networkpolicy" in version "networking.k8s.io/v1": kinds are case-sensitive, and kubectl and the API server '
        "know it as NetworkPolicy; fix: spell it kind: NetworkPolicy"]


# --- a container's image ---------------------------------------------------------------------------------

NO_IMAGE = "has no image (the API server refuses every pod KubeRay creates from this template); fix:"


def test_ray_worker_container_without_an_image(results, small):
    image = next(o for o in small if o["kind"] == "RayService")[
        "spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert errors(results, "worker-no-image") == [
        f"error: worker-no-image.yaml: RayService/llama-8b: {WORKER}.template.spec.containers[0].image: Required "
        f"value: the Ray container (KubeRay runs Ray in containers[0]) {NO_IMAGE} set image: {image} (the Ray image "
        "of the other groups)"]


def test_head_container_with_an_empty_image(results, small):
    image = next(o for o in small if o["kind"] == "RayService")[
        "spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"]
    assert errors(results, "head-empty-image") == [
        "error: head-empty-image.yaml: RayService/llama-8b: spec.rayClusterConfig.headGroupSpec.template.spec."
        f"containers[0].image: Required value: the Ray container (KubeRay runs Ray in containers[0]) {NO_IMAGE} set "
        f"image: {image} (the Ray image of the other groups)"]


def test_sidecar_without_an_image(results):
    assert errors(results, "sidecar-no-image") == [
        f"error: sidecar-no-image.yaml: RayService/llama-8b: {WORKER}.template.spec.containers[1].image: Required "
        f"value: container log-shipper {NO_IMAGE} set the container's image"]


# --- where the pinned documents are not in the module cache ----------------------------------------------


def test_without_the_module_cache_it_says_what_it_did_not_check(small, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump_all(small))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "empty"))
    upstream.load.cache_clear()
    try:
        code, out = validate_cli(capsys, "rendered.yaml")
    finally:
        upstream.load.cache_clear()
    assert code == 0, out
    assert ("warning: rendered.yaml: (every object): kind, integer fields: not in the Go module cache: "
            f"k8s.io/kubernetes@v1.36.3 ({tmp_path / 'empty'}/k8s.io/kubernetes@v1.36.3/api/openapi-spec/v3)") in out
    assert ("the spelling of kinds and the int32/int64 ranges of their integers were not checked; fix: run `make "
            "schemas` (it downloads them), or set GOMODCACHE to the cache that holds them") in out


def test_module_paths_are_escaped_as_go_does():
    assert upstream.module_dir("github.com/BurntSushi/toml", "v1.0.0").name == "toml@v1.0.0"
    assert upstream.module_dir("github.com/BurntSushi/toml", "v1.0.0").parent.name == "!burnt!sushi"
