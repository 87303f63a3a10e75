"""Preflight (`kuberay-llm validate`): every overlay passes, and every rule fails a broken copy of a real
overlay with that rule's message. Runs the real pinned kustomize and kubeconform and Ray's own models."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from overlay_helpers import REPO, edit_yaml, llm_config, validate
from kuberay_llm import render

OVERLAYS = render.overlay_names()



def test_every_overlay_passes(capsys):
    assert {"small", "medium", "large", "gke-a3-deepseek", "local-cpu"} <= set(OVERLAYS)
    code, out = validate(capsys)
    assert code == 0, out
    assert f"validated {len(OVERLAYS)} source(s): 0 error(s)" in out


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_says_what_it_is_for_and_what_it_needs(name):
    first = (REPO / "overlays" / name / "kustomization.yaml").read_text().splitlines()[0]
    assert first.startswith(f"# {name}: ")
    assert re.search(r"\(.*\d+ GPUs?, .*\d+ nodes?\)", first), first


def test_overlays_are_thin():
    for overlay in (REPO / "overlays").iterdir():
        for f in overlay.iterdir():
            assert "apiVersion: ray.io" not in f.read_text(), f"{f} copies the RayService: patch the base instead"


# --- rule: TP x PP fits the worker groups ------------------------------------------------------------


def test_tensor_parallel_needs_more_gpus_than_the_worker_group_offers(capsys, overlay_copy):
    medium = overlay_copy("medium")
    patch = medium / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace('nvidia.com/gpu: "8"', 'nvidia.com/gpu: "4"'))
    code, out = validate(capsys, medium)
    assert code == 1
    assert ("RayService/llama-70b: serveConfigV2 llm_configs[0].engine_kwargs.tensor_parallel_size=8: needs 8 GPUs "
            "per replica (tensor_parallel_size 8 × pipeline_parallel_size 1), but worker group gpu-group offers "
            "4 nvidia.com/gpu × 1 pod") in out


def test_tensor_parallel_across_pods_is_rejected(capsys, overlay_copy):
    large = overlay_copy("large")
    patch = large / "worker-gpus.yaml"
    text = patch.read_text().replace('nvidia.com/gpu: "8"', 'nvidia.com/gpu: "4"')
    patch.write_text(text.replace("  value: 2\n", "  value: 4\n"))
    code, out = validate(capsys, large)
    assert code == 1
    assert ("engine_kwargs.tensor_parallel_size=8: splits every layer over 8 GPUs, but no worker pod has more "
            "than 4 nvidia.com/gpu") in out


def test_serve_max_replicas_beyond_what_the_workers_can_grow_to(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"]["autoscaling_config"].update(max_replicas=8))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("autoscaling_config.max_replicas=8: needs 8 GPUs (8 replicas × 1), but worker group gpu-group "
            "offers 1 nvidia.com/gpu × 4 pods (4 GPUs)") in out
    assert "fix: raise the worker group's maxReplicas to 8 or lower max_replicas to 4" in out


# --- rule: accelerator_type schedules ------------------------------------------------------------------


def test_the_a100_40g_trap(capsys, overlay_copy):
    """The tutorial's accelerator_type A100-40G on A100 40GB nodes that only advertise `A100`."""
    medium = overlay_copy("medium")
    patch = medium / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace(
        "- op: add\n  path: /spec/rayClusterConfig/workerGroupSpecs/0/resources\n  value:\n"
        "    accelerator_type:A100-40G: \"1\"\n", ""))
    code, out = validate(capsys, medium)
    assert code == 1
    assert ("llm_configs[0].accelerator_type=A100-40G: worker group gpu-group selects nodes Ray labels "
            "accelerator_type:A100, never accelerator_type:A100-40G: the placement group would wait forever; "
            "fix: set accelerator_type: A100") in out


def test_accelerator_type_without_a_gpu_node_selector(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d).update(accelerator_type="L4"))
    code, out = validate(capsys, small)
    assert code == 1
    assert "llm_configs[0].accelerator_type=L4: no GPU worker group selects a GPU model" in out


# --- rule: one Ray version -------------------------------------------------------------------------


def test_ray_version_differs_from_the_pinned_ray(capsys, overlay_copy):
    small = overlay_copy("small")
    base = small.parent.parent / "manifests" / "base" / "kustomization.yaml"
    base.write_text(base.read_text().replace("newTag: 2.60.0-py312-cu130", "newTag: 2.59.0-py312-cu130"))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("spec.rayClusterConfig.rayVersion=2.59.0: differs from the Ray this repository validates serve "
            "configs with (2.60.0)") in out


def test_image_differs_from_ray_version(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "kustomization.yaml").open("a") as f:
        f.write("images:\n  - name: rayproject/ray-llm\n    newTag: 2.59.0-py312-cu130\n")
    code, out = validate(capsys, small)
    assert code == 1
    assert ("headGroupSpec.template.spec.containers[0].image=rayproject/ray-llm:2.59.0-py312-cu130: runs Ray "
            "2.59.0 but rayVersion is 2.60.0") in out


def test_image_tag_and_ray_version_have_one_source():
    pyproject = (REPO / "pyproject.toml").read_text()
    pinned = re.search(r'"ray\[serve\]==([\d.]+)"', pyproject).group(1)
    base = yaml.safe_load((REPO / "manifests/base/kustomization.yaml").read_text())
    assert base["images"][0]["newTag"].split("-")[0] == pinned


# --- rule: head num-gpus 0 -------------------------------------------------------------------------


def test_head_with_gpus(capsys, overlay_copy):
    large = overlay_copy("large")
    base = large.parent.parent / "manifests" / "base" / "rayservice.yaml"
    base.write_text(base.read_text().replace('num-gpus: "0"', 'num-gpus: "1"'))
    code, out = validate(capsys, large)
    assert code == 1
    assert "spec.rayClusterConfig.headGroupSpec.rayStartParams.num-gpus=1: the head may be given GPU replicas" in out


# --- rule: no secret literal -----------------------------------------------------------------------


def test_token_literal_in_runtime_env(capsys, overlay_copy):
    medium = overlay_copy("medium")
    path, cfg = llm_config(medium)
    edit_yaml(path, lambda d: cfg(d)["runtime_env"]["env_vars"].update(HF_TOKEN="hf_" + "x" * 34))
    code, out = validate(capsys, medium)
    assert code == 1
    assert ("llm_configs[0].runtime_env.env_vars.HF_TOKEN: a secret literal in the serve config; fix: keep the "
            "token in a Secret and reference it with components/hf-token (secretKeyRef)") in out


def test_token_literal_in_container_env(capsys, overlay_copy):
    small = overlay_copy("small")
    with (small / "worker-gpus.yaml").open("a") as f:
        f.write("- op: add\n  path: /spec/rayClusterConfig/workerGroupSpecs/0/template/spec/containers/0/env/-\n"
                "  value: {name: HF_TOKEN, value: not-a-secret-ref}\n")
    code, out = validate(capsys, small)
    assert code == 1
    assert "containers[0].env[1].value: HF_TOKEN is a literal in the manifest" in out


# --- rule: max_model_len set -----------------------------------------------------------------------


def test_max_model_len_missing(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].pop("max_model_len"))
    code, out = validate(capsys, small)
    assert code == 1
    assert "RayService/llama-8b: serveConfigV2 llm_configs[0].engine_kwargs.max_model_len: is not set" in out


# --- rule: placement strategy ----------------------------------------------------------------------


def test_strict_pack_across_nodes(capsys, overlay_copy):
    large = overlay_copy("large")
    path, cfg = llm_config(large)
    edit_yaml(path, lambda d: cfg(d).update(placement_group_config={
        "bundles": [{"GPU": 1}] * 16, "strategy": "STRICT_PACK"}))
    code, out = validate(capsys, large)
    assert code == 1
    assert ("llm_configs[0].placement_group_config.strategy=STRICT_PACK: needs all 16 GPUs of a replica on one "
            "node, but a worker pod has 8; fix: use strategy: PACK") in out


# --- rule: monitoring needs engine metrics ---------------------------------------------------------


def test_monitoring_with_engine_metrics_off(capsys, overlay_copy):
    large = overlay_copy("large")
    kust = large / "kustomization.yaml"
    kust.write_text(kust.read_text().replace("components:\n", "components:\n  - ../../manifests/components/monitoring\n"))
    path, cfg = llm_config(large)
    code, out = validate(capsys, large)
    assert code == 0, out  # the monitoring component itself validates (PodMonitor schema, metrics ports)
    edit_yaml(path, lambda d: cfg(d).update(log_engine_metrics=False))
    code, out = validate(capsys, large)
    assert code == 1
    assert "llm_configs[0].log_engine_metrics=false: the monitoring component is enabled" in out


# --- check 2: strict schemas -----------------------------------------------------------------------


def test_unknown_field_fails_the_schema(capsys, overlay_copy):
    small = overlay_copy("small")
    base = small.parent.parent / "manifests" / "base" / "rayservice.yaml"
    base.write_text(base.read_text().replace("enableInTreeAutoscaling:", "enableInTreeAutoscalng:"))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("overlays/small: RayService/llama-8b: spec.rayClusterConfig: additional properties "
            "'enableInTreeAutoscalng' not allowed") in out


def test_wrong_type_fails_the_schema(capsys, overlay_copy):
    small = overlay_copy("small")
    patch = small / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace("  value: 4\n", "  value: four\n"))
    code, out = validate(capsys, small)
    assert code == 1
    assert "spec.rayClusterConfig.workerGroupSpecs.0.maxReplicas: got string, want integer" in out


# --- check 3: Ray's own models ---------------------------------------------------------------------


def test_unknown_llm_config_key(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d).update(engine_kwarg={}))
    code, out = validate(capsys, small)
    assert code == 1
    assert "serveConfigV2 llm_configs[0].engine_kwarg: unknown key (Ray rejects it)" in out


def test_unknown_autoscaling_key_that_ray_only_rejects_at_deploy_time(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"]["autoscaling_config"].update(target_ongoing_request=8))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("llm_configs[0].deployment_config.autoscaling_config.target_ongoing_request: unknown autoscaling_config "
            "key; fix: did you mean `target_ongoing_requests`?") in out


def test_bad_autoscaling_value(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"]["autoscaling_config"].update(min_replicas=-1))
    code, out = validate(capsys, small)
    assert code == 1
    assert "llm_configs[0].deployment_config.autoscaling_config.min_replicas: " in out


def test_unknown_deployment_config_key(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"].update(max_ongoing_request=64))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("llm_configs[0].deployment_config.max_ongoing_request: unknown Serve deployment option key; "
            "fix: did you mean `max_ongoing_requests`?") in out


def test_unknown_application_and_args_keys(capsys, overlay_copy):
    small = overlay_copy("small")
    path = small / "serve-config.yaml"
    edit_yaml(path, lambda d: (d["applications"][0].update(route_prefx="/"),
                               d["applications"][0]["args"].update(llm_config=[])))
    code, out = validate(capsys, small)
    assert code == 1
    assert "serveConfigV2 applications[0].route_prefx: unknown application key; fix: did you mean `route_prefix`?" in out
    assert "serveConfigV2 args.llm_config: unknown LLMServingArgs key; fix: did you mean `llm_configs`?" in out


def test_serve_config_not_injected(capsys, overlay_copy):
    small = overlay_copy("small")
    kust = small / "kustomization.yaml"
    edit_yaml(kust, lambda d: d.update(components=[c for c in d["components"] if not c.endswith("/serve-config")]))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("RayService/llama-8b: spec.serveConfigV2: has no `applications:` list (it is str, not a mapping); fix: author the serve config as "
            "serve-config.yaml") in out


@pytest.mark.parametrize("builder, public", [("build_openai_app", "LLMServingArgs")])
def test_builder_args_fields_read_from_rays_source_match_the_class(builder, public):
    """The fields preflight reads from Ray's source (no vLLM import) are the class's own."""
    from kuberay_llm.preflight import serve_config

    try:
        import vllm  # noqa: F401  Ray's LLMServingArgs imports vLLM
    except ImportError:
        pytest.fail("vLLM is not installed: run `make setup-local` (part of `make setup`)", pytrace=False)
    import ray.serve.llm

    fields = tuple(getattr(ray.serve.llm, public).model_fields)
    assert serve_config.builder_args_fields(f"ray.serve.llm:{builder}") == fields


# --- inputs ----------------------------------------------------------------------------------------


def test_plain_files_and_stdin(tmp_path, capsys, monkeypatch):
    """`kuberay-llm validate -` and `validate FILE` on kustomize's output, in this process: a CLI subprocess
    imports Ray's LLM config and with it vLLM and torch (~10 s a start on 2 cores)."""
    import io

    text = render.kustomize_build(REPO / "overlays/medium")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out = validate(capsys, "-")
    assert code == 0, out
    broken = tmp_path / "rendered.yaml"
    broken.write_text(text.replace("tensor_parallel_size: 8", "tensor_parallel_size: 16"))
    code, out = validate(capsys, broken)
    assert code == 1
    assert "rendered.yaml: RayService/llama-70b: serveConfigV2 llm_configs[0].engine_kwargs.tensor_parallel_size=16" in out
    assert "Traceback" not in out


def test_unknown_overlay_is_a_usage_error(capsys):
    code, out = validate(capsys, "no-such-tier")
    assert code == 2
    assert "error: no-such-tier: not an overlay (no kustomization.yaml there); known overlays: gke-a3-deepseek" in out


def test_kustomize_error_names_the_overlay(capsys, overlay_copy):
    small = overlay_copy("small")
    (small / "worker-gpus.yaml").write_text("- op: replace\n  path: /spec/nope/0\n  value: 1\n")
    code, out = validate(capsys, small)
    assert code == 2
    assert re.search(r"error: .*overlays/small: kustomize-v5.8.1 failed: ", out), out
    assert "Traceback" not in out


# --- the DeepSeek guide, reproduced -----------------------------------------------------------------

# serveConfigV2 of KubeRay's DeepSeek-R1 guide (ray-service.deepseek.yaml), as the guide prints it.
GUIDE_SERVE_CONFIG = """
applications:
- args:
    llm_configs:
      - model_loading_config:
          model_id: "deepseek"
          model_source: "deepseek-ai/DeepSeek-R1"
        accelerator_type: "H100"
        deployment_config:
          autoscaling_config:
            min_replicas: 1
            max_replicas: 1
        runtime_env:
          env_vars:
            VLLM_USE_V1: "1"
        engine_kwargs:
          tensor_parallel_size: 8
          pipeline_parallel_size: 2
          gpu_memory_utilization: 0.92
          dtype: "auto"
          max_num_seqs: 40
          max_model_len: 16384
          enable_chunked_prefill: true
          enable_prefix_caching: true
  import_path: ray.serve.llm:build_openai_app
  name: llm_app
  route_prefix: "/"
"""
# The one addition: reasoning_parser puts <think> text into reasoning_content instead of content.
GUIDE_ADDITIONS = {"reasoning_parser": "deepseek_r1"}


def test_gke_a3_deepseek_is_the_guides_deployment():
    rendered = render.render_overlay("gke-a3-deepseek")
    (rs,) = [o for o in rendered.objects if o["kind"] == "RayService"]
    assert rs["metadata"]["name"] == "deepseek-r1"  # deepseek-r1-serve-svc, deepseek-r1-head-svc
    ours = yaml.safe_load(rs["spec"]["serveConfigV2"])
    engine = ours["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]
    for key, value in GUIDE_ADDITIONS.items():
        assert engine.pop(key) == value
    assert ours == yaml.safe_load(GUIDE_SERVE_CONFIG)
    worker = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert worker["replicas"] == 2
    assert worker["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"
    limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8"
    assert int(limits["ephemeral-storage"].removesuffix("Gi")) >= 720


def test_large_never_needs_32_gpus_to_upgrade():
    for name in ("large", "gke-a3-deepseek"):
        (rs,) = [o for o in render.render_overlay(name).objects if o["kind"] == "RayService"]
        assert rs["spec"]["upgradeStrategy"]["type"] == "None", name


def test_serve_num_replicas_auto_is_not_a_crash(capsys, overlay_copy):
    """num_replicas: "auto" is Serve's own autoscaling default; the replica rule must not choke on it."""
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d).update(deployment_config={"num_replicas": "auto"}))
    code, out = validate(capsys, small)
    assert "Traceback" not in out
    assert "max_replicas=" not in out
