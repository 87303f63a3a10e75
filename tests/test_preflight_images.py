"""Preflight's image rule (kuberay_llm/preflight/images.py): every Ray container pulls a tag Ray publishes and has
vLLM for a ray.serve.llm app. Each case is a broken copy of a real overlay or chart scenario, validated with the
real pinned kustomize/helm, and asserts the rule's whole message."""

from __future__ import annotations

import re

import pytest
import yaml

from overlay_helpers import REPO, edit_yaml, llm_config, validate
from kuberay_llm.preflight import images

# The tag every GPU tier named before: Ray never published a py311/cu128 ray-llm image for 2.56+.
OLD_TAG = "2.60.0-py311-cu128"
DIGEST = "sha256:" + "0123456789abcdef" * 4



def base_tag() -> str:
    return yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())["images"][0]["newTag"]


def set_base_tag(overlay, tag: str) -> None:
    base = overlay.parent.parent / "manifests" / "base" / "kustomization.yaml"
    text = base.read_text()
    assert f"newTag: {base_tag()}" in text
    base.write_text(text.replace(f"newTag: {base_tag()}", f"newTag: {tag}"))


def rayservice_name(overlay) -> str:
    from kuberay_llm import render

    return next(o["metadata"]["name"] for o in render.render_overlay(str(overlay)).objects
                if o.get("kind") == "RayService")


def test_the_default_tag_is_one_ray_publishes():
    ray = base_tag().split("-", 1)[0]
    assert base_tag() in [f"{ray}-{s}" for s in images.ray_llm_suffixes(ray)]


@pytest.mark.parametrize("tier", ["small", "gke-a3-deepseek"])
def test_the_old_py311_cu128_tag_is_rejected_on_every_ray_container(capsys, overlay_copy, tier):
    overlay = overlay_copy(tier)
    set_base_tag(overlay, OLD_TAG)
    code, out = validate(capsys, overlay)
    assert code == 1
    name = rayservice_name(overlay)
    for group in ("headGroupSpec", "workerGroupSpecs[0]"):
        assert (f"error: {overlay}: RayService/{name}: spec.rayClusterConfig.{group}.template.spec."
                f"containers[0].image=rayproject/ray-llm:{OLD_TAG}: Ray publishes ray-llm for Ray 2.60.0 only as "
                f"2.60.0-py312-cu130, never as {OLD_TAG}: the pods would sit in ImagePullBackOff; fix: use tag "
                "2.60.0-py312-cu130 in manifests/base/kustomization.yaml images (newTag) (published tags: "
                "`crane ls rayproject/ray-llm`)") in out, out


def test_a_private_mirror_keeps_the_tag_check(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write(f"images:\n  - name: rayproject/ray-llm\n    newName: registry.example.com/mirror/ray-llm\n"
                f"    newTag: 2.60.0-py312-cu128\n")
    code, out = validate(capsys, small)
    assert code == 1
    assert ("containers[0].image=registry.example.com/mirror/ray-llm:2.60.0-py312-cu128: Ray publishes ray-llm for "
            "Ray 2.60.0 only as 2.60.0-py312-cu130, never as 2.60.0-py312-cu128") in out


def test_a_mirror_with_the_published_tag_passes(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write(f"images:\n  - name: rayproject/ray-llm\n    newName: registry.example.com/mirror/ray-llm\n")
    code, out = validate(capsys, small)
    assert code == 0, out


def test_a_digest_pin_with_the_tag_passes_and_keeps_ray_version(capsys, overlay_copy):
    small = overlay_copy("small")
    set_base_tag(small, f"{base_tag()}@{DIGEST}")
    code, out = validate(capsys, small)
    assert code == 0, out
    from kuberay_llm import render

    rs = next(o for o in render.render_overlay(str(small)).objects if o.get("kind") == "RayService")
    assert rs["spec"]["rayClusterConfig"]["rayVersion"] == base_tag().split("-")[0]
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert head == f"rayproject/ray-llm:{base_tag()}@{DIGEST}"


def test_a_malformed_digest_is_rejected(capsys, overlay_copy):
    small = overlay_copy("small")
    set_base_tag(small, f"{base_tag()}@sha256:abc")
    code, out = validate(capsys, small)
    assert code == 1
    assert (f"containers[0].image=rayproject/ray-llm:{base_tag()}@sha256:abc: digest 'sha256:abc' is not "
            "sha256:<64 hex digits>; fix: copy the digest from `crane digest <image>` or the registry") in out


def test_a_floating_tag_is_rejected(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write("images:\n  - name: rayproject/ray-llm\n    newTag: latest\n")
    code, out = validate(capsys, small)
    assert code == 1
    assert ("containers[0].image=rayproject/ray-llm:latest: tag 'latest' names no Ray version: pods started on "
            "different days can run different Ray and vLLM, and rayVersion cannot follow it; fix: use a "
            "<ray>-<python>-<cuda> tag such as 2.60.0-py312-cu130 in manifests/base/kustomization.yaml images "
            "(newTag)") in out


def test_plain_ray_image_behind_the_llm_builder_is_rejected(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write("images:\n  - name: rayproject/ray-llm\n    newName: rayproject/ray\n    newTag: 2.60.0-py312-gpu\n")
    code, out = validate(capsys, small)
    assert code == 1
    assert ("headGroupSpec.template.spec.containers[0].image=rayproject/ray:2.60.0-py312-gpu: rayproject/ray is Ray "
            "without vLLM, but the serve config imports ray.serve.llm:: the application fails at import with "
            "ModuleNotFoundError: vllm; fix: use rayproject/ray-llm:2.60.0-py312-cu130, or say how vLLM is "
            "installed with the RayService annotation kuberay-llm/vllm-from (or runtime_env pip)") in out


def test_plain_ray_image_with_vllm_from_runtime_env_passes_the_image_rule(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write("images:\n  - name: rayproject/ray-llm\n    newName: rayproject/ray\n    newTag: 2.60.0-py312-gpu\n")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d).setdefault("runtime_env", {}).update(pip=["vllm==0.29.0"]))
    code, out = validate(capsys, small)
    assert "Ray without vLLM" not in out, out


def test_the_local_cpu_image_needs_its_vllm_from_annotation(capsys, overlay_copy):
    local = overlay_copy("local-cpu")
    kustomization = local / "kustomization.yaml"
    edit_yaml(kustomization, lambda d: d.update(patches=[p for p in d["patches"] if p["path"] != "vllm-from.yaml"]))
    code, out = validate(capsys, local)
    assert code == 1
    assert ("containers[0].image=kuberay-llm/ray-llm-cpu:2.60.0-py311-cpu: kuberay-llm/ray-llm-cpu is not "
            "rayproject/ray-llm, and nothing says how vLLM gets into it for the serve config's ray.serve.llm: "
            "application") in out


def test_the_chart_names_its_own_setting(capsys, tmp_path):
    values = tmp_path / "old-tag-values.yaml"
    values.write_text(f"image:\n  tag: {OLD_TAG}\n")
    code, out = validate(capsys, "--chart", REPO / "charts" / "ray-llm", "--values", values)
    assert code == 1
    assert (f"image=rayproject/ray-llm:{OLD_TAG}: Ray publishes ray-llm for Ray 2.60.0 only as 2.60.0-py312-cu130, "
            f"never as {OLD_TAG}: the pods would sit in ImagePullBackOff; fix: use tag 2.60.0-py312-cu130 in the "
            "chart values image.tag") in out


def test_the_chart_without_vllm_from_on_a_custom_image(capsys, tmp_path):
    values = tmp_path / "custom-values.yaml"
    values.write_text("image:\n  repository: example.com/team/llm-serving\n")
    code, out = validate(capsys, "--chart", REPO / "charts" / "ray-llm", "--values", values)
    assert code == 1
    assert "example.com/team/llm-serving is not rayproject/ray-llm, and nothing says how vLLM gets into it" in out
    values.write_text("image:\n  repository: example.com/team/llm-serving\n  vllmFrom: vllm 0.29 in our base\n")
    code, out = validate(capsys, "--chart", REPO / "charts" / "ray-llm", "--values", values)
    assert code == 0, out


def test_a_ray_line_older_than_the_table_is_a_warning_not_a_guess():
    assert images.ray_llm_suffixes("2.40.0") is None
    ref = images.parse("rayproject/ray-llm:2.40.0-py311-cu124")
    severity, message, _ = images._ray_llm_tag(ref, "x")
    assert severity == "warning" and "older than every row" in message


@pytest.mark.parametrize("text, repository, name, tag, digest", [
    ("rayproject/ray-llm:2.60.0-py312-cu130", "rayproject/ray-llm", "ray-llm", "2.60.0-py312-cu130", ""),
    ("localhost:5000/ray-llm:2.60.0-py312-cu130", "localhost:5000/ray-llm", "ray-llm", "2.60.0-py312-cu130", ""),
    ("localhost:5000/ray-llm", "localhost:5000/ray-llm", "ray-llm", "", ""),
    (f"rayproject/ray-llm@{DIGEST}", "rayproject/ray-llm", "ray-llm", "", DIGEST),
])
def test_image_references_parse(text, repository, name, tag, digest):
    assert images.parse(text) == images.ImageRef(text, repository, name, tag, digest)


# --- Ray import paths in the serve config (preflight/import_paths.py) --------------------------------------


def test_a_removed_ray_name_is_named_with_its_replacement(capsys, overlay_copy):
    small = overlay_copy("small")
    edit_yaml(small / "serve-config.yaml", lambda d: d["applications"][0].update(import_path="ray.serve.llm:LLMRouter"))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("serveConfigV2 applications[0].import_path=ray.serve.llm:LLMRouter: LLMRouter was removed from "
            "ray.serve.llm in this Ray 2.60.0: Serve fails when it deploys the app; fix: use "
            "ray.serve.llm.ingress:OpenAiIngress") in out


def test_a_router_in_the_wrong_module_names_where_it_lives(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"].update(request_router_config={
        "request_router_class": "ray.serve.llm.request_router:ConsistentHashRouter"}))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("deployment_config.request_router_config.request_router_class=ray.serve.llm.request_router:"
            "ConsistentHashRouter: ray.serve.llm.request_router has no ConsistentHashRouter in this Ray 2.60.0: "
            "Serve fails when it deploys the app; fix: use "
            "ray.serve.experimental.consistent_hash_router:ConsistentHashRouter") in out


@pytest.mark.parametrize("path", ["ray.serve.llm.request_router:PrefixCacheAffinityRouter",
                                  "ray.serve.llm.request_router.PrefixCacheAffinityRouter",
                                  "ray.serve.experimental.consistent_hash_router:ConsistentHashRouter",
                                  "ray.serve.llm:build_openai_app", "ray.serve.llm:build_dp_openai_app",
                                  "ray.serve.llm:build_pd_openai_app", "my_company.routers:Mine"])
def test_import_paths_the_pinned_ray_has(path):
    from kuberay_llm.preflight import import_paths

    assert import_paths.problem(path) is None


def test_a_module_that_does_not_exist():
    from kuberay_llm.preflight import import_paths

    assert import_paths.problem("ray.serve.llm.routers:X") == "module ray.serve.llm.routers does not exist in this Ray"
