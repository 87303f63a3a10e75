"""The deployment kinds of Ray's LLM quickstart index beyond the three tiers (vision, reasoning, hybrid reasoning,
gpt-oss), the large-model guide's operational advice (one zone for a multi-node engine, disk for the whole
checkpoint), and the preflight rules for what each kind needs, each failing a broken copy of a real overlay with
its exact message. Real kustomize, helm, Ray's models and the installed vLLM (its MultiModalConfig arguments,
reasoning parsers and quantization minimum capabilities); nothing here needs a GPU."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from overlay_helpers import edit_yaml, llm_config, validate
from test_chart_parity import CHART, RELEASE, _tool
from kuberay_llm import render
from kuberay_llm.plan.catalog import find_model, model_names
from kuberay_llm.plan.checkpoint import checkpoint_bytes

# What each of Ray's guides (ray-project/ray doc/source/serve/tutorials/deployment-serve-llm/<guide>/serve_*.py)
# configures, written out from the guides. The overlays add only what the guides leave to the platform
# (reasoning_parser spelled out for gpt-oss, its tool-call parser, the vision guide's limit_mm_per_prompt section).
GUIDES = {
    "vision": {  # vision-llm/serve_qwen_VL.py + "Limiting images per prompt"
        "model_id": "my-qwen-VL", "model_source": "Qwen/Qwen2.5-VL-7B-Instruct", "accelerator_type": "L40S",
        "replicas": (1, 2), "engine_kwargs": {"max_model_len": 8192, "limit_mm_per_prompt": {"image": 3}}},
    "reasoning": {  # reasoning-llm/serve_qwq_32b.py
        "model_id": "my-qwq-32B", "model_source": "Qwen/QwQ-32B", "accelerator_type": "L40S", "replicas": (1, 2),
        "engine_kwargs": {"tensor_parallel_size": 4, "max_model_len": 32768, "reasoning_parser": "deepseek_r1"}},
    "hybrid-reasoning": {  # hybrid-reasoning-llm/serve_qwen_3_32b.py
        "model_id": "my-qwen-3-32b", "model_source": "Qwen/Qwen3-32B", "accelerator_type": "L40S",
        "replicas": (1, 2),
        "engine_kwargs": {"tensor_parallel_size": 4, "max_model_len": 32768, "reasoning_parser": "qwen3"}},
    "gpt-oss-20b": {  # gpt-oss/serve_gpt_oss.py, GPT_OSS_SIZE=20b
        "model_id": "my-gpt-oss", "model_source": "openai/gpt-oss-20b", "accelerator_type": "L4", "replicas": (1, 2),
        "engine_kwargs": {"max_model_len": 32768}},
    "gpt-oss-120b": {  # gpt-oss/serve_gpt_oss.py, GPT_OSS_SIZE=120b
        "model_id": "my-gpt-oss", "model_source": "openai/gpt-oss-120b", "accelerator_type": "L40S",
        "replicas": (1, 2), "engine_kwargs": {"max_model_len": 32768, "tensor_parallel_size": 2}},
}
# Added to the guides' gpt-oss engine_kwargs: vLLM's own default parser made explicit, and Harmony tool calls.
GPT_OSS_ADDITIONS = {"reasoning_parser": "openai_gptoss", "enable_auto_tool_choice": True, "tool_call_parser": "openai"}

# model.safetensors.index.json metadata.total_size of each repository on the Hugging Face Hub (DeepSeek-V3's
# files: 680.57B F8_E4M3 + 3.92B BF16 + 41.6M F32 scales, the same shapes as R1's).
PUBLISHED_CHECKPOINT_BYTES = {
    "Qwen/Qwen3-32B": 65_524_246_528,
    "Qwen/Qwen2.5-VL-7B-Instruct": 16_584_333_312,
    "openai/gpt-oss-20b": 13_761_264_768,
    "openai/gpt-oss-120b": 65_248_815_744,
    "deepseek-ai/DeepSeek-V3": 688_586_727_753,
}

ONE_ZONE_LINE = "  - ../../manifests/components/one-zone\n"



def rayservice(name: str) -> dict:
    (rs,) = [o for o in render.render_overlay(name).objects if o["kind"] == "RayService"]
    return rs


# --- the overlays are the guides ------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", sorted(GUIDES))
def test_overlay_serves_what_rays_guide_configures(overlay):
    guide = GUIDES[overlay]
    rs = rayservice(overlay)
    (app,) = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    (cfg,) = app["args"]["llm_configs"]
    assert cfg["model_loading_config"] == {"model_id": guide["model_id"], "model_source": guide["model_source"]}
    assert cfg["accelerator_type"] == guide["accelerator_type"]
    scaling = cfg["deployment_config"]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"]) == guide["replicas"]
    engine = dict(cfg["engine_kwargs"])
    if overlay.startswith("gpt-oss"):
        assert {k: engine.pop(k) for k in GPT_OSS_ADDITIONS} == GPT_OSS_ADDITIONS
    assert engine == guide["engine_kwargs"]
    # The GPUs the guide names, one replica per worker pod, as many pods as Serve's replicas.
    worker = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    gpus = int(worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus == engine.get("tensor_parallel_size", 1)
    assert worker["maxReplicas"] == guide["replicas"][1]
    assert worker["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": f"NVIDIA-{guide['accelerator_type']}"}


def test_multi_node_tiers_keep_their_workers_in_one_zone():
    for name in ("large", "gke-a3-deepseek"):
        affinity = rayservice(name)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["affinity"]
        (term,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {"topologyKey": "topology.kubernetes.io/zone",
                        "labelSelector": {"matchLabels": {"ray.io/node-type": "worker"}},
                        "matchLabelKeys": ["ray.io/cluster"]}, name
    for name in GUIDES:  # one pod per replica: no constraint
        assert "affinity" not in rayservice(name)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]


# --- the catalog ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLISHED_CHECKPOINT_BYTES))
def test_checkpoint_size_from_the_catalog_matches_the_published_files(name):
    # Exact for the bf16 / MXFP4 checkpoints; DeepSeek's fp8 block scales differ by a few MB of rounding.
    assert checkpoint_bytes(find_model(name)) == pytest.approx(PUBLISHED_CHECKPOINT_BYTES[name], rel=1e-4)


def test_catalog_reasoning_parsers_are_vllm_parsers():
    from kuberay_llm.vllm_check import _reasoning_parsers

    known = _reasoning_parsers()
    assert known, "vLLM is not installed: run `make setup-local` (part of `make setup`)"
    parsers = {find_model(n).reasoning.parser for n in model_names() if find_model(n).reasoning}
    assert parsers == {"deepseek_r1", "qwen3", "openai_gptoss"} and parsers <= known


def test_multimodal_arguments_are_read_from_vllm():
    from kuberay_llm.preflight.deployment_advice import multimodal_engine_args

    assert {"limit_mm_per_prompt", "mm_processor_kwargs", "mm_encoder_tp_mode"} <= multimodal_engine_args()
    assert "max_model_len" not in multimodal_engine_args()


# --- preflight rules, each with a broken copy of a real overlay -----------------------------------------------

def test_advice_rules_on_broken_copies(capsys, overlay_copy):
    # One copy of every overlay (each overlay_copy call copies them all again): break six of them.
    large, small, reasoning, hybrid, oss, vision = map(overlay_copy, ("large", "small", "reasoning", "hybrid-reasoning",
                                                                      "gpt-oss-20b", "vision"))
    # large without the one-zone component and with half the disk its checkpoint needs.
    kust = large / "kustomization.yaml"
    assert ONE_ZONE_LINE in kust.read_text()
    kust.write_text(kust.read_text().replace(ONE_ZONE_LINE, ""))
    patch = large / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace("sizeLimit\n  value: 1000Gi", "sizeLimit\n  value: 500Gi"))
    # small with a vision argument and a reasoning parser it has no use for.
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].update(limit_mm_per_prompt={"image": 2},
                                                             reasoning_parser="deepseek_r1"))
    # QwQ with Qwen3's parser; Qwen3 without one.
    path, cfg = llm_config(reasoning)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].update(reasoning_parser="qwen3"))
    path, cfg = llm_config(hybrid)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].pop("reasoning_parser"))
    # gpt-oss-20b's MXFP4 checkpoint on a T4 (compute capability 7.5).
    patch = oss / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace("nvidia.com/gpu.product: NVIDIA-L4",
                                               "cloud.google.com/gke-accelerator: nvidia-tesla-t4"))
    path, cfg = llm_config(oss)
    edit_yaml(path, lambda d: cfg(d).update(accelerator_type="T4"))
    # vision with a container disk limit below its 16.6 GB checkpoint.
    patch = vision / "worker-gpus.yaml"
    patch.write_text(patch.read_text().replace('{cpu: "6", memory: 48Gi,', '{cpu: "6", memory: 48Gi, ephemeral-storage: 10Gi,'))

    code, out = validate(capsys, large, small, reasoning, hybrid, oss, vision)
    assert code == 1
    assert ("overlays/large: RayService/deepseek-r1: spec.rayClusterConfig.workerGroupSpecs[0].template.spec."
            "affinity: one replica of serveConfigV2 llm_configs[0] spans 2 worker pods (16 GPUs, 8 per pod of group "
            "gpu-group) but nothing keeps those pods in one zone: the traffic between pipeline stages may cross zones "
            "(slower, and billed at about $0.02 per GB); fix: add ../../manifests/components/one-zone to the overlay "
            "(chart: worker.sameZone), a required pod affinity on topology.kubernetes.io/zone, or pin one zone with "
            "a topology.kubernetes.io/zone nodeSelector; on GKE also give the node pool compact placement") in out
    assert ("overlays/large: RayService/deepseek-r1: spec.rayClusterConfig.workerGroupSpecs[0].template.spec."
            "volumes[0].emptyDir.sizeLimit=500Gi: holds 536.9 GB, but deepseek-ai/DeepSeek-R1 downloads 680.57B fp8 "
            "parameters × 1.0002 bytes + 3.92B bf16 parameters × 2 bytes = 688.6 GB into "
            "/home/ray/.cache/huggingface/hub on every node of a replica (worker group gpu-group): the download "
            "fails with 'No space left on device' or the kubelet evicts the pod; fix: raise it to at least 642Gi "
            "(the checkpoint, before logs and caches)") in out
    assert ("RayService/llama-8b: serveConfigV2 llm_configs[0].engine_kwargs.limit_mm_per_prompt: is a multimodal "
            "argument, but meta-llama/Llama-3.1-8B-Instruct is text-only (its config.json has no vision_config): "
            "vLLM drops it, and every request with an image fails; fix: remove it, or serve a vision model "
            "(overlays/vision)") in out
    assert ("RayService/llama-8b: serveConfigV2 llm_configs[0].engine_kwargs.reasoning_parser=deepseek_r1: "
            "meta-llama/Llama-3.1-8B-Instruct is not a reasoning model: it writes no thinking for a parser to "
            "separate (vLLM's think-token parsers fail to start on a vocabulary without their tokens); fix: remove "
            "reasoning_parser") in out
    assert ("RayService/qwq-32b: serveConfigV2 llm_configs[0].engine_kwargs.reasoning_parser=qwen3: is not the "
            "parser of Qwen/QwQ-32B's family (deepseek_r1): the thinking is split from the answer in the wrong place, "
            "or not at all; fix: set reasoning_parser: deepseek_r1") in out
    assert ("overlays/hybrid-reasoning: RayService/qwen3-32b: serveConfigV2 llm_configs[0].engine_kwargs."
            "reasoning_parser: is not set, but Qwen/Qwen3-32B is a reasoning model: its thinking stays in "
            "message.content between <think> tags, and message.reasoning stays empty; fix: set reasoning_parser: "
            "qwen3") in out
    assert ("RayService/gpt-oss-20b: serveConfigV2 llm_configs[0].accelerator_type=T4: openai/gpt-oss-20b's "
            "checkpoint is mxfp4-quantized (config.json quantization_config), which vLLM runs only on compute "
            "capability 8.0 or more; T4 has 7.5: vLLM refuses to start (\"The quantization method ... is not "
            "supported for the current GPU\"); fix: use a GPU with compute capability 8.0 or more (A100, L4, L40S, "
            "H100)") in out
    assert ("RayService/qwen-vl: spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].resources."
            "limits.ephemeral-storage=10Gi: holds 10.7 GB, but Qwen/Qwen2.5-VL-7B-Instruct downloads 8.29B bf16 "
            "parameters × 2 bytes = 16.6 GB into /home/ray/.cache/huggingface/hub") in out
    assert "Traceback" not in out
    severity = {line.split(": ", 1)[0] for line in out.splitlines() if "spans 2 worker pods" in line
                or "engine_kwargs.reasoning_parser: is not set" in line}
    assert severity == {"warning"}  # advice, not a failure: a single-zone cluster or a client that reads content


@pytest.mark.parametrize("overlay", [*sorted(GUIDES), "large", "gke-a3-deepseek", "small", "medium", "local-cpu"])
def test_the_overlays_follow_the_advice(overlay):
    """The rules themselves, on the rendered overlay (validate runs them with every other check above)."""
    from kuberay_llm.preflight import deployment_advice
    from kuberay_llm.preflight.rayservice import facts

    rs = facts(rayservice(overlay))
    assert [str(f) for rule in deployment_advice.RULES for f in rule(overlay, rs, {})] == []


# --- the chart's one-zone default -----------------------------------------------------------------------------

def _chart_affinity(values: str, *sets: str):
    args = [str(_tool("helm")), "template", RELEASE, str(CHART), "-f", str(CHART / "ci" / values)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if proc.returncode:
        return proc.stderr
    (rs,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "RayService"]
    return rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"].get("affinity")


def test_chart_keeps_an_engine_over_several_pods_in_one_zone():
    assert _chart_affinity("large-values.yaml")["podAffinity"]  # auto: TP 8 x PP 2 > 8 GPUs per pod
    assert _chart_affinity("small-values.yaml") is None  # auto: 1 GPU, one pod per replica
    assert _chart_affinity("large-values.yaml", "worker.sameZone=false") is None
    assert _chart_affinity("small-values.yaml", "worker.sameZone=true")["podAffinity"]
    assert "at '/worker/sameZone': value must be 'auto'" in _chart_affinity("small-values.yaml", "worker.sameZone=maybe")
