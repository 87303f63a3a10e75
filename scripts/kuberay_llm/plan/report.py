"""Plan one overlay (or ad-hoc settings) into a result object the CLI, the README table and tests share."""

from __future__ import annotations

from dataclasses import dataclass

from kuberay_llm.errors import UserError
from kuberay_llm.plan.accounting import GiB, Plan, plan
from kuberay_llm.plan.catalog import Gpu
from kuberay_llm.plan.overlay import gpu_shape, llm_configs, plan_input, rayservices
from kuberay_llm.render import render_overlay


@dataclass
class OverlayPlan:
    source: str
    rayservice: str
    model_source: str
    gpu_how: str
    plan: Plan | None = None       # None: not planned (see not_planned)
    not_planned: str = ""
    gpus_per_worker: int = 0
    workers: int = 0
    model_id: str = ""  # the name clients send in requests
    load_format: str = "auto"  # engine_kwargs.load_format (dummy: random weights, nothing downloaded)


def plan_overlay(name: str, gpu_override: Gpu | None = None) -> list[OverlayPlan]:
    rendered = render_overlay(name)
    services = rayservices(rendered.objects)
    if not services:
        raise UserError(f"{rendered.source}: renders no RayService")
    results = []
    for service in services:
        service_name = f"RayService/{(service.get('metadata') or {}).get('name', '?')}"
        configs = llm_configs(service, rendered.source)
        if not configs:
            raise UserError(f"{rendered.source}: {service_name} serveConfigV2 has no applications[].args.llm_configs")
        for config in configs:
            loading = config.get("model_loading_config") or {}
            entry = OverlayPlan(rendered.source, service_name, str(loading.get("model_source") or loading.get("model_id")), "")
            entry.model_id = str(loading.get("model_id") or "")
            entry.load_format = str((config.get("engine_kwargs") or {}).get("load_format") or "auto")
            shape = gpu_shape(service, config)
            entry.gpu_how, entry.gpus_per_worker, entry.workers = shape.how, shape.gpus_per_worker, shape.workers
            gpu = gpu_override or shape.gpu
            if shape.cpu_only and gpu_override is None:
                entry.not_planned = "not planned: CPU-only"
            elif gpu is None:
                entry.not_planned = f"not planned: {shape.how}"
            else:
                if gpu_override is not None:
                    entry.gpu_how = f"--gpu {gpu_override.name}"
                entry.plan = plan(plan_input(config, gpu))
            results.append(entry)
    return results


def as_dict(result: Plan) -> dict:
    inp = result.inputs
    stages = result.stages
    return {
        "model": inp.model.name, "gpu": inp.gpu.name, "tensor_parallel_size": inp.tp,
        "pipeline_parallel_size": inp.pp, "gpus": inp.tp * inp.pp, "max_model_len": inp.max_model_len,
        "gpu_memory_utilization": inp.gpu_memory_utilization, "max_num_seqs": result.max_num_seqs,
        "max_num_batched_tokens": result.max_num_batched_tokens, "kv_cache_dtype": inp.kv_cache_dtype,
        "block_size": result.block_size, "fits": result.fits,
        "weights_gib_per_gpu": [round(s.weights_bytes / GiB, 2) for s in stages] if inp.pp > 1
        else round(stages[0].weights_bytes / GiB, 2),
        "overhead_gib_per_gpu": [round(s.overhead_bytes / GiB, 2) for s in stages],
        "kv_cache_gib_per_gpu": [round(max(0.0, s.kv_bytes) / GiB, 2) for s in stages],
        "layers_per_stage": [s.layers for s in stages],
        "kv_cache_tokens": result.kv_cache_tokens,
        "max_concurrency": round(result.max_concurrency, 2),
        "binding_limit": result.binding_limit,
        "effective_concurrency": round(result.effective_concurrency, 2),
    }


def as_text(result: Plan) -> str:
    d, inp = as_dict(result), result.inputs
    lines = [f"{inp.model.name} on {inp.tp * inp.pp} x {inp.gpu.name} (TP {inp.tp} x PP {inp.pp}), "
             f"max_model_len {inp.max_model_len:,}, gpu_memory_utilization {inp.gpu_memory_utilization}"]
    for i, s in enumerate(result.stages):
        lines.append(f"  stage {i}: {s.layers} layers, weights {s.weights_bytes / GiB:.2f} GiB, overhead "
                     f"{s.overhead_bytes / GiB:.2f} GiB, KV cache {max(0.0, s.kv_bytes) / GiB:.2f} GiB = "
                     f"{s.kv_cache_tokens:,} tokens per GPU ({s.max_concurrency:.2f}x)")
    if not result.fits:
        lines.append("  does not fit: no memory left for the KV cache")
        return "\n".join(lines)
    limit = ("max_num_seqs" if d["binding_limit"] == "max_num_seqs" else "KV memory")
    lines.append(f"  max concurrency at {inp.max_model_len:,} tokens: {d['max_concurrency']:.2f}x "
                 f"(block {result.block_size}, max_num_seqs {result.max_num_seqs}); binding limit: {limit}")
    return "\n".join(lines)
