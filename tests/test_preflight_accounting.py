"""Preflight's Ray resource accounting, Serve ports, gated models and upgrade warning (preflight/ray_resources.py,
serve_ports.py, gated_models.py): each case is a rendered overlay with one change, validated as a manifest file with
the real pinned kubeconform and Ray's schema classes; each asserts the rule's whole message. The fix texts for
overlays and charts are checked on a real overlay copy and a real chart render."""

from __future__ import annotations

import pytest
import yaml

from overlay_helpers import REPO, validate
from preflight_cases import edit_serve_config, head, lines, run_cases, worker
from kuberay_llm import render

GATED = "meta-llama/Llama-3.1-8B-Instruct"
W0 = "spec.rayClusterConfig.workerGroupSpecs[0]"
W0_LIMITS = f"{W0}.template.spec.containers[0].resources.limits"
HEAD = "spec.rayClusterConfig.headGroupSpec"


def per_worker_gpus(config: dict, share: str) -> None:
    config.setdefault("runtime_env", {}).setdefault("env_vars", {})["VLLM_RAY_PER_WORKER_GPUS"] = share


def start_param(group: str, **params):
    def change(objects, rs):
        (head(rs) if group == "head" else worker(rs)).setdefault("rayStartParams", {}).update(params)

    return change


def llm(change):
    return lambda objects, rs: edit_serve_config(rs, change)


def head_serve_port(**fields):
    def change(objects, rs):
        for port in head(rs)["template"]["spec"]["containers"][0]["ports"]:
            if port["name"] == "serve":
                port.update(fields)

    return change


def token_on_worker(objects, rs):
    worker(rs)["template"]["spec"]["containers"][0]["env"].append(
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "hf_token", "optional": True}}})


def gated_source(config, data):
    config["model_loading_config"]["model_source"] = GATED


CASES = {
    "unchanged": ("small", lambda objects, rs: None),
    # what each Ray node advertises
    "num-gpus-2": ("small", start_param("worker", **{"num-gpus": "2"})),
    "group-resources-gpu-2": ("small", lambda objects, rs: worker(rs).update(resources={"nvidia.com/gpu": "2"})),
    "num-gpus-half": ("small", start_param("worker", **{"num-gpus": "0.5"})),
    "head-num-cpus-2.5": ("small", start_param("head", **{"num-cpus": "2.5"})),
    "num-gpus-0": ("small", start_param("worker", **{"num-gpus": "0"})),
    "num-gpus-1": ("small", start_param("worker", **{"num-gpus": "1"})),
    "num-cpus-16": ("small", start_param("worker", **{"num-cpus": "16"})),
    "num_gpus-underscore": ("small", start_param("worker", num_gpus="1")),
    # placement bundles and fractional GPUs
    "bundle-gpu-2": ("small", llm(lambda c, d: c.update(placement_group_config={"bundles": [{"GPU": 2}]}))),
    "bundle-gpu-half": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"GPU": 0.5}]}), per_worker_gpus(c, "0.5")))),
    "bundle-gpu-half-default-util": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"GPU": 0.5}]}), c["engine_kwargs"].pop("gpu_memory_utilization"),
        per_worker_gpus(c, "0.5")))),
    "bundle-gpu-half-fits": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"GPU": 0.5}]}), c["engine_kwargs"].update(gpu_memory_utilization=0.45),
        per_worker_gpus(c, "0.5")))),
    "bundle-per-worker-quarter": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundle_per_worker": {"GPU": 0.25}}),
        c["engine_kwargs"].update(gpu_memory_utilization=0.3), per_worker_gpus(c, "0.25")))),
    # runtime_env settings the engine does not see (preflight/runtime_envs.py)
    "bundle-gpu-half-no-env": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"CPU": 1}, {"GPU": 0.5}]}),
        c["engine_kwargs"].update(gpu_memory_utilization=0.45)))),
    "bundle-gpu-half-app-env": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"GPU": 0.5}]}), c["engine_kwargs"].update(gpu_memory_utilization=0.45),
        d["applications"][0].update(runtime_env={"env_vars": {"VLLM_RAY_PER_WORKER_GPUS": "0.5"}})))),
    "bundle-gpu-half-shadowed-env": ("small", llm(lambda c, d: (
        c.update(placement_group_config={"bundles": [{"GPU": 0.5}]}), c["engine_kwargs"].update(gpu_memory_utilization=0.45),
        c["deployment_config"].update(ray_actor_options={"runtime_env": {"env_vars": {"VLLM_RAY_PER_WORKER_GPUS": "0.5"}}})))),
    "actor-env-shadowed": ("small", llm(lambda c, d: c["deployment_config"].update(ray_actor_options={"runtime_env": {
        "env_vars": {"NCCL_DEBUG": "INFO", "VLLM_USE_V1": "1"}, "pip": ["emoji"]}}))),
    "actor-env-alone": ("small", llm(lambda c, d: (c.pop("runtime_env"), c["deployment_config"].update(
        ray_actor_options={"runtime_env": {"env_vars": {"NCCL_DEBUG": "INFO"}}})))),
    "ingress-env": ("small", llm(lambda c, d: d["applications"][0]["args"].update(ingress_deployment_config={
        "ray_actor_options": {"runtime_env": {"env_vars": {"VLLM_LOGGING_LEVEL": "DEBUG", "NCCL_DEBUG": "INFO",
                                                           "LOG_FORMAT": "json"}}}}))),
    # ports
    "http-port-9000": ("small", llm(lambda c, d: d.update(http_options={"port": 9000}))),
    "http-port-9000-ports-agree": ("small", lambda objects, rs: (
        edit_serve_config(rs, lambda c, d: d.update(http_options={"port": 9000})), head_serve_port(containerPort=9000)(objects, rs),
        worker(rs)["template"]["spec"]["containers"][0]["ports"].append({"name": "serve", "containerPort": 9000}))),
    "http-host-local": ("small", llm(lambda c, d: d.update(http_options={"host": "127.0.0.1"}))),
    "head-serve-8001": ("small", head_serve_port(containerPort=8001)),
    "head-no-serve-port": ("small", head_serve_port(name="http")),
    "serve-service-target": ("small", lambda objects, rs: rs["spec"].update(
        serveService={"spec": {"ports": [{"name": "serve", "port": 8000, "targetPort": 9000}]}})),
    # gated models
    "gated": ("small", llm(gated_source)),
    "gated-secret-env": ("small", lambda objects, rs: (edit_serve_config(rs, gated_source), token_on_worker(objects, rs))),
    "gated-env-from": ("small", lambda objects, rs: (edit_serve_config(rs, gated_source), worker(rs)["template"]["spec"][
        "containers"][0].update(envFrom=[{"secretRef": {"name": "hf-token"}}]))),
    "gated-model-id-only": ("small", llm(lambda c, d: c["model_loading_config"].update(
        model_id=GATED, model_source=None) or c["model_loading_config"].pop("model_source"))),
    "mirror": ("small", lambda objects, rs: None),
    # upgrades
    "medium": ("medium", lambda objects, rs: None),
    "medium-unset": ("medium", lambda objects, rs: rs["spec"].pop("upgradeStrategy")),
    "medium-in-place": ("medium", lambda objects, rs: rs["spec"].update(upgradeStrategy={"type": "None"})),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    bases = {name: render.render_overlay(name).objects for name in ("small", "medium")}
    return run_cases(CASES, bases, tmp_path_factory.mktemp("accounting"))


def only(results, name: str, severity: str = "error", code: int = 1) -> list[str]:
    return lines(results, name, severity, code=code)


def ours(results, name: str) -> list[str]:
    """The case's findings but the capacity planner's (its max_num_seqs advice on these tiers)."""
    return [line for line in results[name][1] if "engine_kwargs.max_num_seqs" not in line]


def test_the_unchanged_copies_pass(results):
    for name in ("unchanged", "medium-in-place"):
        assert results[name][0] == 0 and ours(results, name) == [], results[name]


# --- what each Ray node advertises, against its container ----------------------------------------------------


GPU_LIMIT = f"{W0_LIMITS}.nvidia.com/gpu"


def test_num_gpus_beyond_the_containers_gpus(results):
    assert only(results, "num-gpus-2") == [
        f"error: num-gpus-2.yaml: RayService/llama-8b: {W0}.rayStartParams.num-gpus=2: makes Ray advertise 2 GPUs on "
        f"each gpu-group pod, but its Ray container gets 1 ({GPU_LIMIT}): Ray places replicas on GPUs the pod does not "
        "have, and their vLLM engines find no CUDA device; fix: remove rayStartParams.num-gpus (KubeRay then takes the "
        "container's GPU limit) or set it to 1"]


def test_group_resources_gpus_beyond_the_containers_gpus(results):
    assert only(results, "group-resources-gpu-2") == [
        f"error: group-resources-gpu-2.yaml: RayService/llama-8b: {W0}.resources.nvidia.com/gpu=2: makes Ray "
        f"advertise 2 GPUs on each gpu-group pod, but its Ray container gets 1 ({GPU_LIMIT}): Ray places replicas on "
        "GPUs the pod does not have, and their vLLM engines find no CUDA device; fix: remove resources.nvidia.com/gpu "
        "(KubeRay then takes the container's GPU limit) or set it to 1"]


def test_num_gpus_that_ray_start_refuses(results):
    assert only(results, "num-gpus-half") == [
        f"error: num-gpus-half.yaml: RayService/llama-8b: {W0}.rayStartParams.num-gpus=0.5: ray start refuses it "
        "(Invalid value for '--num-gpus': '0.5' is not a valid integer): the gpu-group pods' Ray never starts; fix: "
        "give a whole number, or remove it (KubeRay then takes the container's limit); a fraction of a GPU per engine "
        "belongs in the serve config's placement_group_config bundles"]


def test_num_cpus_that_ray_start_refuses(results):
    assert only(results, "head-num-cpus-2.5") == [
        f"error: head-num-cpus-2.5.yaml: RayService/llama-8b: {HEAD}.rayStartParams.num-cpus=2.5: ray start refuses "
        "it (Invalid value for '--num-cpus': '2.5' is not a valid integer): the head pods' Ray never starts; fix: give "
        "a whole number, or remove it (KubeRay then takes the container's limit)"]


def test_num_gpus_zero_on_the_only_gpu_group(results):
    assert only(results, "num-gpus-0") == [
        f"error: num-gpus-0.yaml: RayService/llama-8b: {W0}.rayStartParams.num-gpus=0: Ray is told the worker groups "
        "have 0 GPUs in all, but each replica of my-llama-3.1-8b places 1: its placement group never fits and the "
        "replica waits forever; fix: remove num-gpus from the GPU worker groups (KubeRay then takes the containers' "
        "GPU limits)"]
    assert lines(results, "num-gpus-0", "warning")[0] == (
        f"warning: num-gpus-0.yaml: RayService/llama-8b: {W0}.rayStartParams.num-gpus=0: makes Ray schedule 0 of the "
        f"1 GPUs each gpu-group pod holds ({GPU_LIMIT}): 1 GPU per pod paid for and never used; fix: remove "
        "rayStartParams.num-gpus (KubeRay then takes the container's GPU limit) or lower the limit")


def test_a_start_param_ray_start_does_not_have(results):
    """Ray's own `ray start` parser decides (preflight/ray_start.py)."""
    assert only(results, "num_gpus-underscore") == [
        f"error: num_gpus-underscore.yaml: RayService/llama-8b: {W0}.rayStartParams.num_gpus: KubeRay passes it as "
        "`ray start --num_gpus=...`, which Ray refuses: No such option '--num_gpus'. (Did you mean one of: '--num-cpus', "
        "'--num-gpus'?): the gpu-group pods' Ray never starts; fix: spell it as `ray start --help` does (dashes, not "
        "underscores), or remove it"]


def test_num_gpus_equal_to_the_container_passes(results):
    assert results["num-gpus-1"][0] == 0 and ours(results, "num-gpus-1") == []


def test_num_cpus_beyond_the_containers_cpus_warns(results):
    assert lines(results, "num-cpus-16", "warning", code=0)[0] == (
        f"warning: num-cpus-16.yaml: RayService/llama-8b: {W0}.rayStartParams.num-cpus=16: makes Ray schedule 16 CPUs "
        f"of work on each gpu-group pod, but its Ray container gets 8 ({W0_LIMITS}.cpu): the actors are throttled to "
        "8; fix: remove rayStartParams.num-cpus (KubeRay then takes the container's CPUs) or raise the container's cpu")


# --- placement bundles and fractional GPUs -------------------------------------------------------------------

PG = "serveConfigV2 llm_configs[0].placement_group_config"


def test_bundle_beyond_one_pods_gpus(results):
    assert only(results, "bundle-gpu-2") == [
        f"error: bundle-gpu-2.yaml: RayService/llama-8b: {PG}.bundles[0].GPU=2: asks 2 GPUs on one node, but no "
        "worker pod advertises more than 1 (rayStartParams num-gpus, else the Ray container's GPU limit): the "
        "placement group never fits and the replica waits forever; fix: ask at most 1 GPU per bundle (one bundle per "
        "GPU, as Ray Serve LLM's default is), or give the worker pods more GPUs"]


def fractional(name: str, where: str, share: int, util: str, most: str) -> str:
    return (f"error: {name}.yaml: RayService/llama-8b: {PG}.{where}: lets Ray place {share} vLLM engines on one GPU, "
            f"but each requires gpu_memory_utilization {util} of the whole GPU's memory ({share} × {util} > 1): the "
            "next engine on that GPU fails at start (vLLM: Free memory on device ... is less than desired GPU memory "
            f"utilization); fix: set engine_kwargs.gpu_memory_utilization to at most {most} (1/{share} less each "
            "engine's CUDA context), or give each engine a whole GPU (GPU: 1)")


def test_fractional_gpu_with_the_overlays_memory_share(results):
    assert only(results, "bundle-gpu-half") == [fractional("bundle-gpu-half", "bundles[0].GPU=0.5", 2, "0.9", "0.45")]


def test_fractional_gpu_with_vllms_default_memory_share(results):
    """vLLM 0.29's default gpu_memory_utilization is 0.92 (vllm/config/cache.py)."""
    assert only(results, "bundle-gpu-half-default-util") == [
        fractional("bundle-gpu-half-default-util", "bundles[0].GPU=0.5", 2, "0.92", "0.45")]


def test_fractional_gpu_per_worker(results):
    assert only(results, "bundle-per-worker-quarter") == [
        fractional("bundle-per-worker-quarter", "bundle_per_worker.GPU=0.25", 4, "0.3", "0.2")]


def test_fractional_gpu_whose_engines_fit_passes(results):
    assert lines(results, "bundle-gpu-half-fits", code=0) == []


def test_fractional_gpu_without_the_engines_share(results):
    """Ray 2.60 derives VLLM_RAY_PER_WORKER_GPUS for its tasks only (ray-project/ray#63875)."""
    assert only(results, "bundle-gpu-half-no-env") == [
        f"error: bundle-gpu-half-no-env.yaml: RayService/llama-8b: {PG}.bundles[1].GPU=0.5: Ray Serve LLM derives "
        "VLLM_RAY_PER_WORKER_GPUS=0.5 from it for its download and engine-config tasks only, never for the replica, "
        "whose vLLM engine reads it when it creates its GPU workers: each worker asks a whole GPU of a 0.5-GPU bundle "
        "and the engine fails to start (Engine core initialization failed; ray-project/ray#63875); fix: set "
        'runtime_env.env_vars.VLLM_RAY_PER_WORKER_GPUS: "0.5" in the llm_config']


def test_fractional_gpu_share_set_for_the_whole_application_passes(results):
    assert lines(results, "bundle-gpu-half-app-env", code=0) == []


ACTOR_ENV = "serveConfigV2 llm_configs[0].deployment_config.ray_actor_options.runtime_env"


def test_fractional_gpu_share_on_the_deployment_shadowed_by_the_llm_configs_env_vars(results):
    """The small tier's llm_config sets runtime_env.env_vars (VLLM_USE_V1): it replaces the deployment's."""
    assert [line.split(": RayService/llama-8b: ")[1].split(":")[0] for line in only(results, "bundle-gpu-half-shadowed-env")] \
        == [f"{PG}.bundles[0].GPU=0.5"]
    assert any(line.startswith(f"warning: bundle-gpu-half-shadowed-env.yaml: RayService/llama-8b: {ACTOR_ENV}.env_vars: ")
               for line in results["bundle-gpu-half-shadowed-env"][1])


def test_deployment_runtime_env_replaced_by_the_llm_configs(results):
    assert lines(results, "actor-env-shadowed", "warning", code=0)[:1] == [
        f"warning: actor-env-shadowed.yaml: RayService/llama-8b: {ACTOR_ENV}.env_vars: is replaced whole by the "
        "llm_config's runtime_env.env_vars (Ray Serve LLM merges the two runtime_envs key by key, "
        "LLMServer.get_deployment_options): its variables NCCL_DEBUG never reach the replica or its vLLM engine; fix: "
        "move it into the llm_config's runtime_env.env_vars"]
    assert not any(f"{ACTOR_ENV}.pip" in line for line in results["actor-env-shadowed"][1])  # the llm_config sets no pip


def test_deployment_runtime_env_alone_reaches_the_replica(results):
    assert not any("runtime_env" in line for line in results["actor-env-alone"][1])


def test_engine_variables_on_the_ingress_warn(results):
    assert [line for line in lines(results, "ingress-env", "warning", code=0) if "ingress_deployment_config" in line] == [
        "warning: ingress-env.yaml: RayService/llama-8b: serveConfigV2 args.ingress_deployment_config.ray_actor_options"
        ".runtime_env.env_vars: sets NCCL_DEBUG, VLLM_LOGGING_LEVEL for the OpenAiIngress replicas only: the vLLM "
        "engine runs in the LLMServer deployment, built from each llm_config, and never sees them; fix: set them in "
        "each llm_config's runtime_env.env_vars"]


def test_ray_decides_which_placement_is_fractional():
    """(Where `make setup-local` installed vLLM's CPU build: Ray's own reader is the one the rule calls.)"""
    vllm_models = pytest.importorskip("ray.llm._internal.serve.engines.vllm.vllm_models")
    from kuberay_llm.preflight.runtime_envs import fractional_gpu

    for placement in ({"bundles": [{"GPU": 0.5}]}, {"bundles": [{"CPU": 1}, {"GPU": 0.25}]},
                      {"bundle_per_worker": {"GPU": 0.3}}, {"bundles": [{"GPU": 1}]}, {}):
        assert fractional_gpu(placement) == vllm_models.VLLMEngineConfig._detect_fractional_gpu_from_pg(placement)


def test_vllms_default_memory_share_is_the_one_the_rule_assumes():
    """(Where `make setup-local` installed vLLM's CPU build.)"""
    import dataclasses

    CacheConfig = pytest.importorskip("vllm.config.cache").CacheConfig

    from kuberay_llm.preflight.ray_resources import VLLM_DEFAULT_GPU_MEMORY_UTILIZATION

    field = {f.name: f for f in dataclasses.fields(CacheConfig)}["gpu_memory_utilization"]
    assert field.default.default == VLLM_DEFAULT_GPU_MEMORY_UTILIZATION


# --- ports ---------------------------------------------------------------------------------------------------

HEAD_SERVE = f"{HEAD}.template.spec.containers[0].ports[2].containerPort"


def test_serve_port_moved_without_the_containers(results):
    assert only(results, "http-port-9000") == [
        f"error: http-port-9000.yaml: RayService/llama-8b: {HEAD_SERVE}=8000: Serve listens on 9000 (serveConfigV2 "
        "http_options.port=9000), but KubeRay finds Serve at the Ray container's port named serve: the operator checks "
        "the proxy's health and llama-8b-serve-svc sends traffic to port 8000; fix: set the head container's port "
        "named serve to containerPort 9000, or set http_options.port: 8000",
        f"error: http-port-9000.yaml: RayService/llama-8b: {W0}.template.spec.containers[0].ports: Serve listens on "
        "9000 (serveConfigV2 http_options.port=9000), but KubeRay finds Serve at the Ray container's port named serve "
        "(none declared: 8000): the readiness probe KubeRay gives worker group gpu-group asks port 8000, so its pods "
        "never become Ready and never get traffic; fix: declare containerPort 9000 named `serve` on the worker's Ray "
        "container, or set http_options.port: 8000"]


def test_serve_port_moved_with_the_containers_passes(results):
    assert lines(results, "http-port-9000-ports-agree", code=0) == []


def test_head_serve_port_moved_without_serve(results):
    assert only(results, "head-serve-8001") == [
        f"error: head-serve-8001.yaml: RayService/llama-8b: {HEAD_SERVE}=8001: Serve listens on 8000 (serveConfigV2 "
        "http_options.port (unset: 8000)), but KubeRay finds Serve at the Ray container's port named serve: the "
        "operator checks the proxy's health and llama-8b-serve-svc sends traffic to port 8001; fix: set the head "
        "container's port named serve to containerPort 8000, or set http_options.port: 8001"]


def test_serve_on_loopback_only(results):
    assert only(results, "http-host-local") == [
        "error: http-host-local.yaml: RayService/llama-8b: serveConfigV2 http_options.host=127.0.0.1: Serve's proxies "
        "listen on 127.0.0.1 only: llama-8b-serve-svc, KubeRay's health checks and the workers' readiness probes "
        "cannot reach them; fix: remove host (Serve listens on all interfaces, 0.0.0.0)"]


def test_head_without_a_serve_port(results):
    assert only(results, "head-no-serve-port") == [
        f"error: head-no-serve-port.yaml: RayService/llama-8b: {HEAD}.template.spec.containers[0].ports: declares no "
        "port named 'serve' (or with the prefix 'serve-'): KubeRay creates no Kubernetes service for Ray Serve "
        "(llama-8b-serve-svc); fix: add {name: serve, containerPort: 8000} to the head container's ports"]


def test_custom_serve_service_targets_another_port(results):
    assert only(results, "serve-service-target") == [
        "error: serve-service-target.yaml: RayService/llama-8b: spec.serveService.spec.ports[0].targetPort=9000: "
        "sends the serve Service's traffic to port 9000, but Serve listens on 8000 (serveConfigV2 http_options.port "
        "(unset: 8000)); fix: set targetPort: 8000 (or targetPort: serve)"]


# --- gated models --------------------------------------------------------------------------------------------

CREATE = "kubectl create secret generic hf-token --from-literal=hf_token=<your token>"


def gated(name: str, field: str, fix: str) -> str:
    return (f"error: {name}: RayService/llama-8b: serveConfigV2 llm_configs[0].model_loading_config.{field}={GATED}: "
            f"is a gated Hugging Face repository (https://huggingface.co/{GATED}: its files need an accepted license "
            "and a token), but the Ray container of gpu-group has no HF_TOKEN: the download on the replica's node "
            f"fails with 401 Cannot access gated repo after the pods start; fix: create the Secret hf-token ({CREATE}) "
            f"and {fix}")


FILE_FIX = "give the Ray containers env HF_TOKEN from it (valueFrom.secretKeyRef {name: hf-token, key: hf_token})"


def test_gated_model_without_a_token(results):
    assert only(results, "gated") == [gated("gated.yaml", "model_source", FILE_FIX)]


def test_gated_model_named_by_model_id_alone(results):
    assert only(results, "gated-model-id-only") == [gated("gated-model-id-only.yaml", "model_id", FILE_FIX)]


@pytest.mark.parametrize("name", ["gated-secret-env", "gated-env-from", "mirror"])
def test_a_token_or_an_ungated_mirror_passes(results, name):
    assert lines(results, name, code=0) == []


def test_gated_model_in_an_overlay_names_the_component(capsys, overlay_copy):
    small = overlay_copy("small")
    path = small / "serve-config.yaml"
    path.write_text(path.read_text().replace("unsloth/Meta-Llama-3.1-8B-Instruct", GATED))
    code, out = validate(capsys, small)
    assert code == 1
    assert gated("overlays/small", "model_source", "add ../../manifests/components/hf-token to the overlay's "
                 "components")[len("error: "):] in out
    kustomization = small / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace(
        "components:\n", "components:\n  - ../../manifests/components/hf-token\n", 1))
    code, out = validate(capsys, small)
    assert "gated Hugging Face repository" not in out and code == 0, out


def test_gated_model_in_the_chart_names_the_value(capsys, tmp_path):
    values = yaml.safe_load((REPO / "charts/ray-llm/ci/small-values.yaml").read_text())
    values.setdefault("serve", {}).setdefault("model", {})["source"] = GATED
    path = tmp_path / "gated-values.yaml"
    path.write_text(yaml.safe_dump(values))
    code, out = validate(capsys, "--chart", REPO / "charts/ray-llm", "--values", path)
    assert code == 1
    assert "is a gated Hugging Face repository" in out
    assert f"fix: create the Secret hf-token ({CREATE}) and set hfToken.enabled: true in the values" in out


# --- upgrades ------------------------------------------------------------------------------------------------


def upgrade(name: str, shown: str) -> str:
    return (f"warning: {name}.yaml: RayService/llama-70b: spec.upgradeStrategy.type={shown}: an upgrade of "
            "rayClusterConfig starts a second RayCluster and keeps this one serving until the new one is ready: 16 GPUs "
            "at once (8 per cluster at its minimum), but the worker groups grow to 8: in a GPU pool of that size the new "
            "cluster stays pending and the upgrade never completes; fix: set upgradeStrategy.type: None (serve-config "
            "changes still apply in place; cluster changes need the RayService re-created), or size the GPU pool for 16 "
            "GPUs")


def test_blue_green_upgrade_of_a_tier_that_fills_its_pool_warns(results):
    assert results["medium"][0] == 0 and ours(results, "medium") == [upgrade("medium", "NewCluster")]
    assert ours(results, "medium-unset") == [upgrade("medium-unset", "(unset: NewCluster)")]


def test_blue_green_upgrade_of_an_elastic_tier_does_not_warn(results):
    """small: 1 GPU at its minimum, 4 at its maximum: two minimal clusters fit."""
    assert not any("upgradeStrategy" in line for line in results["unchanged"][1])
