"""`kuberay-llm plan`: predict vLLM's KV capacity for an overlay or for ad-hoc settings."""

from __future__ import annotations

import argparse
import json

from kuberay_llm.errors import UserError
from kuberay_llm.plan import flags
from kuberay_llm.plan import patterns
from kuberay_llm.plan.accounting import DEFAULT_GPU_MEMORY_UTILIZATION, PlanInput, plan
from kuberay_llm.plan.catalog import find_gpu, find_model
from kuberay_llm.plan.report import as_dict, as_text, plan_overlay
from kuberay_llm.render import overlay_names

EXAMPLES = ("kuberay-llm plan large\n"
            "kuberay-llm plan small --gpu L4 --json\n"
            "kuberay-llm plan --model deepseek-ai/DeepSeek-R1 --gpu H100-80GB --tp 8 --pp 2 --max-model-len 32768\n"
            "kuberay-llm plan large-dp-ep --compare large --compare large-pd   # serving patterns side by side\n"
            "kuberay-llm plan --markdown-table   # the README tiers table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overlay", nargs="?", help="overlay name or directory (omit with --model)")
    parser.add_argument("--model", help="Hugging Face id, e.g. deepseek-ai/DeepSeek-R1")
    parser.add_argument("--gpu", help="GPU type, e.g. H100-80GB, A100-40GB, L40S (overrides the overlay's)")
    parser.add_argument("--tp", type=int, help="tensor_parallel_size (default 1; with --model)")
    parser.add_argument("--pp", type=int, help="pipeline_parallel_size (default 1; with --model)")
    parser.add_argument("--max-model-len", type=int, help="max_model_len in tokens")
    parser.add_argument("--gpu-memory-utilization", type=float,
                        help=f"fraction of GPU memory vLLM may use (default {DEFAULT_GPU_MEMORY_UTILIZATION})")
    parser.add_argument("--max-num-seqs", type=int, help="max_num_seqs (default: vLLM's for the GPU)")
    parser.add_argument("--max-num-batched-tokens", type=int, help="max_num_batched_tokens (default: vLLM's)")
    parser.add_argument("--kv-cache-dtype", help="auto, fp8, ... (default auto)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--markdown-table", action="store_true", help="print the README tiers table")
    parser.add_argument("--compare", action="append", default=[], metavar="OVERLAY",
                        help="also plan OVERLAY and print both side by side: vLLM engines, weights and KV cache per "
                             "GPU, concurrency at 16k and 32k tokens (printed anyway for data-parallel and "
                             "prefill/decode overlays)")


def run(args: argparse.Namespace) -> int:
    flags.check(args)
    if args.markdown_table:
        from kuberay_llm.plan.readme import tiers_table
        print(tiers_table(), end="")
        return 0
    if args.model and args.overlay:
        raise UserError("give an overlay or --model, not both")
    if args.model:
        return _run_ad_hoc(args)
    if not args.overlay:
        raise UserError(f"give an overlay ({', '.join(overlay_names())}) or --model")
    gpu = find_gpu(args.gpu) if args.gpu else None
    entries = plan_overlay(args.overlay, gpu)
    if args.json:
        print(json.dumps([{"source": e.source, "object": e.rayservice, "model_source": e.model_source,
                           "gpu_from": e.gpu_how, "not_planned": e.not_planned or None,
                           **(as_dict(e.plan) if e.plan else {}),
                           **({"cold_start": cold_start(e).as_dict()} if e.plan and e.plan.fits else {})}
                          for e in entries], indent=2))
    else:
        for e in entries:
            print(f"{e.source}: {e.rayservice}: {e.model_source} (GPU from {e.gpu_how})")
            print(f"  {e.not_planned}" if e.plan is None else as_text(e.plan))
            if e.plan is not None and e.plan.fits:
                print("\n".join("  " + line for line in cold_start(e).lines()))
        patterns.print_comparison(args.overlay, args.compare, gpu)
    return 1 if any(e.plan is not None and not e.plan.fits for e in entries) else 0


def cold_start(entry):
    """The predicted apply -> HEALTHY of one planned llm_config (kuberay_llm.plan.coldstart)."""
    from kuberay_llm.plan import coldstart

    inp = entry.plan.inputs
    return coldstart.predict(inp.model, inp.gpu, tp=inp.tp, pp=inp.pp, model_source=entry.model_source,
                             load_format=entry.load_format)


def _run_ad_hoc(args: argparse.Namespace) -> int:
    if not args.gpu:
        raise UserError("--model needs --gpu (e.g. --gpu H100-80GB)")
    model = find_model(args.model)
    flags.check_against_model(args, model)
    fraction = args.gpu_memory_utilization
    result = plan(PlanInput(model=model, gpu=find_gpu(args.gpu), tp=args.tp or 1, pp=args.pp or 1,
                            max_model_len=args.max_model_len or model.max_position_embeddings,
                            gpu_memory_utilization=DEFAULT_GPU_MEMORY_UTILIZATION if fraction is None else fraction,
                            max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                            kv_cache_dtype=args.kv_cache_dtype or "auto"))
    print(json.dumps(as_dict(result), indent=2) if args.json else as_text(result))
    return 0 if result.fits else 1
