"""Turn an overlay's serveConfigV2 into one that runs on this machine, and say what changed.

Only what cannot run on a CPU-only, offline, 2-core machine is replaced: the model (no hub here), the
parallel sizes, the accelerator, GPU-only engine args, replica counts beyond one, and the ingress CPU
reservation. Application names, route prefixes, model ids, the other engine_kwargs and runtime_env stay.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from kuberay_llm import serveconfig
from kuberay_llm.errors import UserError
from kuberay_llm.render import Rendered

# Engine args that only mean something on a GPU, or that the tiny random model cannot honour.
# gpu_memory_utilization stays: vLLM's CPU worker ignores it once kv_cache_memory_bytes is set
# (vllm/v1/worker/cpu_worker.py, 0.29.0).
GPU_ONLY_ENGINE_KWARGS = {
    "quantization": "the tiny model has unquantized weights",
    "kv_cache_dtype": "fp8 KV caches need a GPU",
    "enable_expert_parallel": "the tiny model has no experts",
    "data_parallel_size": "one engine on one CPU node",
}
PARALLEL_SIZES = ("tensor_parallel_size", "pipeline_parallel_size")
REPLICA_FIELDS = ("min_replicas", "max_replicas", "initial_replicas")
# vLLM's CPU platform sets kv_cache_memory_bytes from this (GiB) when present (vllm/platforms/cpu.py).
CPU_KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
LLM_BUILDERS = ("ray.serve.llm:build_openai_app",)
# Ray Serve LLM's other builders, and why this machine does not run them (Ray 2.60, vLLM 0.29 in .venv).
NOT_RUN_LOCALLY = {
    "ray.serve.llm:build_pd_openai_app":
        "P/D moves the KV cache over NIXL: vLLM 0.29's NixlConnector accepts the cpu platform with a cpu KV buffer "
        "and Ray's nixl 1.3.2 pin loads on a CPU-only host, but the local CPU stack (requirements/local-cpu.txt) "
        "leaves nixl out with the CUDA-only pins, so the connector cannot start here; `kuberay-llm validate` and "
        "`kuberay-llm plan` check it offline",
    "ray.serve.llm:build_dp_openai_app":
        "data-parallel attention with expert parallelism splits a MoE model's experts over the DP ranks, and the "
        "tiny local models are dense, without experts (and each rank would be a whole engine of its own on 2 "
        "cores); `kuberay-llm validate` and `kuberay-llm plan` check it offline",
}
# With a request router each llm_config runs this many replicas: the router needs a choice, two fit on 2 cores.
ROUTED_REPLICAS = 2
# The tiny models run eager (no torch.compile): on 2 cores `kuberay-llm local local-cpu` reached RUNNING in 55 s
# eager against 79 s compiled, and an in-process engine started in 86 s against 106 s (README, "local runs").
# An overlay that sets enforce_eager keeps its value.
TINY_MODEL_EAGER_WHY = "a tiny model: torch.compile costs more start-up than it saves"


@dataclass(frozen=True)
class Replacement:
    where: str  # `llm_app: llm_configs[0].engine_kwargs.tensor_parallel_size`
    before: Any
    after: Any
    why: str

    def __str__(self) -> str:
        def show(value: Any) -> str:
            return "(removed)" if value is _REMOVED else "(unset)" if value is _UNSET else repr(value)
        return f"{self.where}: {show(self.before)} -> {show(self.after)}  ({self.why})"


_REMOVED, _UNSET = object(), object()


def serve_config_of(rendered: Rendered) -> tuple[str, dict]:
    """(RayService name, parsed serveConfigV2) of a rendered overlay with exactly one RayService."""
    services = [o for o in rendered.objects if o.get("kind") == "RayService"]
    if len(services) != 1:
        raise UserError(f"{rendered.source}: expected one RayService, found {len(services)}")
    service = services[0]
    name = (service.get("metadata") or {}).get("name", "?")
    try:
        config = serveconfig.of_rayservice(service)
    except serveconfig.ServeConfigError as err:
        raise UserError(f"{rendered.source}: RayService/{name} {err.field}: {err}") from None
    return name, config.data


def llm_configs_of(app: dict) -> list[dict]:
    configs = (app.get("args") or {}).get("llm_configs") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise UserError(f"application {app.get('name')}: llm_configs must be inline mappings to run locally")
    return configs


def localize(serve_config: dict, *, model_path: str | Callable[[dict], tuple[str, str]],
             kv_cache_bytes: int, replicas: int | None = None,
             direct_streaming: bool = False) -> tuple[dict, list[Replacement]]:
    """A copy of `serve_config` that runs here, and the list of replacements made (in order).

    replicas: each llm_config's replica count (None: ROUTED_REPLICAS where a request router is set, else one).
    direct_streaming: RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING is on, so the LLM server is the ingress and Ray
    refuses an ingress_deployment_config."""
    config = copy.deepcopy(serve_config)
    changes: list[Replacement] = []

    def change(where: str, mapping: dict, key: str, value: Any, why: str) -> None:
        before = mapping.get(key, _UNSET)
        if value is _REMOVED:
            if key not in mapping:
                return
            del mapping[key]
        else:
            if before == value:
                return
            mapping[key] = value
        changes.append(Replacement(f"{where}.{key}", before, value, why))

    http = config.setdefault("http_options", {})
    change("http_options", http, "host", "127.0.0.1", "serve on loopback only")

    for app in config["applications"]:
        name = app.get("name", "default")
        import_path = app.get("import_path", "")
        if import_path in NOT_RUN_LOCALLY:
            raise UserError(f"application {name}: import_path {import_path} does not run locally: "
                            f"{NOT_RUN_LOCALLY[import_path]}")
        if import_path not in LLM_BUILDERS:
            raise UserError(f"application {name}: import_path {import_path!r} cannot run locally; "
                            f"`kuberay-llm local` runs {', '.join(LLM_BUILDERS)} applications")
        args = app.setdefault("args", {})
        if direct_streaming:
            change(f"{name}: args", args, "ingress_deployment_config", _REMOVED,
                   "direct streaming makes the LLM server the ingress; Ray refuses this key then "
                   "(ingress/builder.py), and `kuberay-llm validate` says so for the cluster")
        else:
            ingress = args.setdefault("ingress_deployment_config", {})
            actor = ingress.setdefault("ray_actor_options", {})
            change(f"{name}: args.ingress_deployment_config.ray_actor_options", actor, "num_cpus", 0,
                   "2 cores: the OpenAI ingress reserves none, the engine gets them")
        for i, llm in enumerate(llm_configs_of(app)):
            where = f"{name}: llm_configs[{i}]"
            loading = llm.setdefault("model_loading_config", {})
            # model_path: one directory, or llm_config -> (directory, what it is): the tiny model of its kind
            path, what = model_path(llm) if callable(model_path) else (model_path, "a tiny random-weight Llama")
            change(f"{where}.model_loading_config", loading, "model_source", path,
                   f"no model hub here: {what} generated offline")
            if "tokenizer_source" in loading:
                change(f"{where}.model_loading_config", loading, "tokenizer_source", path,
                       "the tiny model's own tokenizer")
            change(where, llm, "accelerator_type", _REMOVED, "no GPU here")
            change(where, llm, "accelerator_config", {"kind": "cpu"}, "vLLM's CPU backend")
            if any(set(b) - {"CPU", "memory"} for b in _bundles(llm.get("placement_group_config"))):
                change(where, llm, "placement_group_config", _REMOVED, "its bundles ask for accelerators")
            engine = llm.setdefault("engine_kwargs", {})
            for key in PARALLEL_SIZES:
                if key in engine:
                    change(f"{where}.engine_kwargs", engine, key, 1, "one CPU device")
            for key, why in GPU_ONLY_ENGINE_KWARGS.items():
                change(f"{where}.engine_kwargs", engine, key, _REMOVED, why)
            if "enforce_eager" not in engine:
                change(f"{where}.engine_kwargs", engine, "enforce_eager", True, TINY_MODEL_EAGER_WHY)
            env_vars = (llm.get("runtime_env") or {}).get("env_vars") or {}
            if not env_vars.get(CPU_KV_CACHE_ENV):  # that env var, when set, overrides kv_cache_memory_bytes
                change(f"{where}.engine_kwargs", engine, "kv_cache_memory_bytes", kv_cache_bytes,
                       "bounded KV cache on a shared machine")
            deployment = llm.get("deployment_config") or {}
            routed = bool((deployment.get("request_router_config") or {}).get("request_router_class"))
            count = replicas or (ROUTED_REPLICAS if routed else 1)
            _set_replicas(where, llm, count, change,
                          f"{count} tiny replicas fit on 2 cores" + (": the request router needs a choice"
                                                                     if routed else "") if count > 1 else
                          "one replica fits on 2 cores")
            actor_options = deployment.get("ray_actor_options") or {}
            change(f"{where}.deployment_config.ray_actor_options", actor_options, "num_gpus", _REMOVED, "no GPU here")
    return config, changes


def _set_replicas(where: str, llm: dict, count: int, change, why: str) -> None:
    """`count` replicas: the autoscaling bounds where the llm_config autoscales, num_replicas otherwise. One
    replica only lowers what is above it (the Ray default is one)."""
    deployment = llm.get("deployment_config") or {}
    autoscaling = deployment.get("autoscaling_config")
    if count == 1:
        for key in REPLICA_FIELDS:
            if isinstance((autoscaling or {}).get(key), int) and autoscaling[key] > 1:
                change(f"{where}.deployment_config.autoscaling_config", autoscaling, key, 1, why)
        if isinstance(deployment.get("num_replicas"), int) and deployment["num_replicas"] > 1:
            change(f"{where}.deployment_config", deployment, "num_replicas", 1, why)
        return
    deployment = llm.setdefault("deployment_config", {})
    # Each replica's placement group is its actor's bundle merged with the engine's {"CPU": 1}
    # (ray/llm/_internal/serve/core/server/llm_server.py, configs/accelerators.py): 2 CPUs, one replica on 2 cores.
    actor = deployment.setdefault("ray_actor_options", {})
    change(f"{where}.deployment_config.ray_actor_options", actor, "num_cpus", 0,
           f"{count} replicas on 2 cores: each replica's engine reserves one CPU, its actor none")
    if isinstance(autoscaling, dict):
        for key in REPLICA_FIELDS:
            if key in autoscaling or key != "initial_replicas":
                change(f"{where}.deployment_config.autoscaling_config", autoscaling, key, count, why)
    else:
        change(f"{where}.deployment_config", deployment, "num_replicas", count, why)


def _bundles(placement: Any) -> list[dict]:
    if not isinstance(placement, dict):
        return []
    bundles = list(placement.get("bundles") or [])
    if isinstance(placement.get("bundle_per_worker"), dict):
        bundles.append(placement["bundle_per_worker"])
    return [b for b in bundles if isinstance(b, dict)]
