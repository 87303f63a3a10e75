"""Check 4j: runtime_env settings that the vLLM engine's processes never see.

Where each process of a Ray Serve LLM replica gets its environment, in Ray 2.60 and vLLM 0.29:
- the LLMServer replica actor: Serve merges the application's runtime_env into each deployment's, variable by
  variable for env_vars (ray/serve/_private/application_state.py, override_runtime_envs_except_env_vars), over the
  runtime_env LLMServer.get_deployment_options builds (ray/llm/_internal/serve/core/server/llm_server.py):
  `{**the build's runtime_env, **deployment_config.ray_actor_options.runtime_env, **llm_config.runtime_env}`, a
  merge key by key: a key the llm_config sets (env_vars, pip, working_dir, ...) replaces the deployment's whole;
- the vLLM engine core runs in a process the replica spawns (it inherits the replica's os.environ), and creates the
  engine's GPU workers as Ray actors that inherit the runtime_env of the engine-config task
  (vllm/engine/arg_utils.py create_engine_config: ray_runtime_env = ray.get_runtime_context().runtime_env;
  vllm/v1/executor/ray_utils.py: ray.init(runtime_env=parallel_config.ray_runtime_env));
- `ingress_deployment_config` configures the OpenAiIngress deployment only (LLMServingArgs,
  ray/llm/_internal/serve/core/ingress/builder.py): nothing of it reaches the LLMServer or its engine;
- VLLM_RAY_PER_WORKER_GPUS, which Ray Serve LLM derives from a fractional placement bundle
  (vllm_models.py VLLMEngineConfig._detect_fractional_gpu_from_pg, get_runtime_env_with_local_env_vars), goes
  only to its download and engine-config tasks (node_initialization_utils.py, vllm_engine.py
  _prepare_engine_config), never to the replica: the engine core reads it from the replica's environment when it
  sizes its GPU workers (vllm/v1/executor/ray_executor.py: num_gpus = envs.VLLM_RAY_PER_WORKER_GPUS, default 1.0),
  each worker asks a whole GPU of a fractional bundle, and the engine fails to start
  (https://github.com/ray-project/ray/issues/63875, open against this Ray).
"""

from __future__ import annotations

from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts, items, mapping
from kuberay_llm.serveconfig import LLMEntry

PER_WORKER_GPUS = "VLLM_RAY_PER_WORKER_GPUS"
# The environment variables vLLM's Ray executor copies to its workers by prefix (vllm/ray/ray_env.py
# DEFAULT_ENV_VAR_PREFIXES): the ones meant for the engine.
ENGINE_PREFIXES = ("VLLM_", "FLASH_ATTENTION_", "LMCACHE_", "NCCL_", "UCX_", "HF_", "HUGGING_FACE_")


def fractional_gpu(placement: dict) -> float | None:
    """The GPU share of one engine worker that Ray Serve LLM reads from placement_group_config, or None."""
    try:
        from ray.llm._internal.serve.engines.vllm.vllm_models import VLLMEngineConfig
    except ImportError:  # the module imports vLLM: the same rule, as Ray 2.60 writes it
        per_worker = mapping(placement.get("bundle_per_worker"))
        if per_worker:
            gpu = per_worker.get("GPU", 0)
            return gpu if isinstance(gpu, (int, float)) and 0 < gpu < 1 else None
        for bundle in items(placement.get("bundles")):
            if isinstance(bundle, dict) and "GPU" in bundle:
                gpu = bundle["GPU"]
                return gpu if isinstance(gpu, (int, float)) and 0 < gpu < 1 else None
        return None
    try:
        return VLLMEngineConfig._detect_fractional_gpu_from_pg(placement)
    except (TypeError, AttributeError):  # a shape placement_group_config's own check reports
        return None


def _actor_env(deployment: dict) -> dict:
    return mapping(mapping(deployment.get("ray_actor_options")).get("runtime_env"))


def replica_env_vars(rs: RayServiceFacts, e: LLMEntry) -> dict:
    """The env_vars of the runtime_env the replica actor ends up with (the llm_config's replace the deployment's)."""
    apps = rs.serve.applications if rs.serve else ()
    app = apps[e.app_index].runtime_env if e.app_index < len(apps) else {}
    own = e.runtime_env if "env_vars" in e.runtime_env else _actor_env(e.deployment)
    return {**mapping(app.get("env_vars")), **mapping(own.get("env_vars"))}


def _container_has(rs: RayServiceFacts, name: str) -> bool:
    """Every GPU worker's Ray container sets `name` (the raylet's environment, which the replica inherits)."""
    groups = rs.gpu_workers
    return bool(groups) and all(any(isinstance(v, dict) and v.get("name") == name
                                    for v in items((g.containers[0] if g.containers else {}).get("env")))
                                for g in groups)


def rule_fractional_gpu_reaches_the_engine(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for e in rs.llm_entries:
        if e.on_cpu:
            continue
        share = fractional_gpu(e.placement)
        if share is None or PER_WORKER_GPUS in replica_env_vars(rs, e) or _container_has(rs, PER_WORKER_GPUS):
            continue
        where = "bundle_per_worker" if mapping(e.placement.get("bundle_per_worker")) else "bundles[0]"
        for i, bundle in enumerate(items(e.placement.get("bundles"))):
            if where != "bundle_per_worker" and isinstance(bundle, dict) and "GPU" in bundle:
                where = f"bundles[{i}]"
                break
        out.append(Finding(
            ERROR, source, obj, f"{e.path}.placement_group_config.{where}.GPU={share:g}",
            f"Ray Serve LLM derives {PER_WORKER_GPUS}={share:g} from it for its download and engine-config tasks "
            "only, never for the replica, whose vLLM engine reads it when it creates its GPU workers: each worker "
            f"asks a whole GPU of a {share:g}-GPU bundle and the engine fails to start (Engine core initialization "
            "failed; ray-project/ray#63875)",
            f"set runtime_env.env_vars.{PER_WORKER_GPUS}: \"{share:g}\" in the llm_config"))
    return out


def rule_runtime_env_reaches_the_engine(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for e in rs.llm_entries:
        actor = _actor_env(e.deployment)
        for key in sorted(set(actor) & set(e.runtime_env)):
            lost = actor[key]
            if key == "env_vars":
                lost = sorted(set(mapping(actor[key])) - set(mapping(e.runtime_env[key])))
                if not lost:
                    continue
                what = f"its variables {', '.join(lost)} never reach"
            else:
                what = "its value never reaches"
            out.append(Finding(
                WARNING, source, obj, f"{e.path}.deployment_config.ray_actor_options.runtime_env.{key}",
                f"is replaced whole by the llm_config's runtime_env.{key} (Ray Serve LLM merges the two runtime_envs "
                f"key by key, LLMServer.get_deployment_options): {what} the replica or its vLLM engine",
                f"move it into the llm_config's runtime_env.{key}"))
    for app in (rs.serve.applications if rs.serve else ()):
        ingress = mapping(app.args.get("ingress_deployment_config"))
        env_vars = mapping(_actor_env(ingress).get("env_vars"))
        meant = sorted(str(n) for n in env_vars if str(n).startswith(ENGINE_PREFIXES))
        if meant and app.llm_entries:
            out.append(Finding(
                WARNING, source, obj,
                f"{app.args_path}.ingress_deployment_config.ray_actor_options.runtime_env.env_vars",
                f"sets {', '.join(meant)} for the OpenAiIngress replicas only: the vLLM engine runs in the "
                "LLMServer deployment, built from each llm_config, and never sees them",
                "set them in each llm_config's runtime_env.env_vars"))
    return out


RULES = [rule_fractional_gpu_reaches_the_engine, rule_runtime_env_reaches_the_engine]
