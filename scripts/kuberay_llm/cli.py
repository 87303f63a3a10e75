"""The `kuberay-llm` command. Each subcommand lives in its own module with `add_arguments` and `run`.

Modules are imported only for the subcommand that runs, so `kuberay-llm plan` never loads the
Kubernetes client and `kuberay-llm validate` never loads Ray Serve's HTTP stack.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from kuberay_llm import exitcodes
from kuberay_llm.errors import UserError

# name -> (module, one-line help, examples shown by `kuberay-llm NAME --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "render": ("kuberay_llm.render", "print the rendered manifests of an overlay",
               "kuberay-llm render gke-a3-deepseek | kubectl diff -f -"),
    "validate": ("kuberay_llm.validate", "offline preflight of overlays and manifest files",
                 "kuberay-llm validate                 # every overlay\n"
                 "kuberay-llm validate overlays/large  # one overlay\n"
                 "kustomize build . | kuberay-llm validate -"),
    "local": ("kuberay_llm.local.command", "run an overlay's serve config on this machine (Ray Serve LLM, vLLM CPU)",
              "kuberay-llm local                 # overlays/local-cpu, smoke test, stop\n"
              "kuberay-llm local small --keep    # leave it running on http://127.0.0.1:8000\n"
              "kuberay-llm local --component prefix-routing   # + components/prefix-routing (2 replicas)\n"
              "kuberay-llm local --component high-throughput  # HAProxy, direct streaming on the local head\n"
              "kuberay-llm local --stop          # stop a kept instance"),
    "plan": ("kuberay_llm.plan.cli", "predict vLLM's KV-cache capacity and concurrency of an overlay",
             "kuberay-llm plan large\n"
             "kuberay-llm plan small --gpu L4 --json\n"
             "kuberay-llm plan --model deepseek-ai/DeepSeek-R1 --gpu H100-80GB --tp 8 --pp 2 --max-model-len 32768\n"
             "kuberay-llm plan --markdown-table   # the README tiers table"),
    "size": ("kuberay_llm.size.command", "GPU type, TP, max_num_seqs and replicas for TTFT/TPOT targets at a request rate",
             "kuberay-llm size --model meta-llama/Llama-3.1-8B-Instruct --input-len 2000 --output-len 300 \\\n"
             "    --ttft-p90 1 --tpot-p50 30ms --rps 20 --price H100-80GB=3.10 --price L40S=1.20\n"
             "kuberay-llm size --model Qwen/Qwen2.5-32B-Instruct --input-len 512 --output-len 256 \\\n"
             "    --ttft-p90 2 --tpot-p50 0.05 --rps 5 --gpu H100-80GB --emit sized/qwen32b"),
    "apply": ("kuberay_llm.harness.apply", "server-side apply an overlay to the current kube context",
              "kuberay-llm apply small -n llm\n"
              "kuberay-llm apply gke-a3-deepseek --dry-run   # server-side dry run: strict field validation, no change"),
    "wait": ("kuberay_llm.harness.wait", "wait until a RayService serves; fail fast with the cause",
             "kuberay-llm wait llama-8b -n llm --timeout 30m"),
    "smoke": ("kuberay_llm.harness.smoke", "smoke-test a RayService's OpenAI API (models, chat, streamed chat)",
              "kuberay-llm smoke llama-8b -n llm                          # port-forward through the API server\n"
              "kuberay-llm smoke llama-8b --endpoint http://10.0.0.7:8000  # an endpoint you already reach"),
    "bench": ("kuberay_llm.loadgen.command", "load an OpenAI-compatible endpoint: TTFT/TPOT/ITL and tokens/s per concurrency",
              "kuberay-llm bench llama-8b -n llm                  # a RayService, through a port-forward\n"
              "kuberay-llm bench --endpoint http://127.0.0.1:8000 --model my-llama-3.1-8b \\\n"
              "    --tokenizer unsloth/Meta-Llama-3.1-8B-Instruct --concurrency 1,8,64 --out results/bench-small"),
    "status": ("kuberay_llm.harness.status", "one-line verdict and the application/deployment/pod states",
               "kuberay-llm status llama-8b -n llm"),
    "diagnose": ("kuberay_llm.harness.diagnose", "status, events, pod conditions, container states and last logs",
                 "kuberay-llm diagnose llama-8b -n llm"),
    "cluster": ("kuberay_llm.cluster.command", "a local cluster with Ray inside (needs root): up, down, status",
                "sudo kuberay-llm cluster up     # writes .work/cluster/kubeconfig\n"
                "sudo kuberay-llm cluster down   # stops every process it started, by PID"),
    "delete": ("kuberay_llm.harness.delete", "delete a RayService (KubeRay then deletes its cluster and pods)",
               "kuberay-llm delete llama-8b -n llm --wait"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuberay-llm",
        description="Render, validate, plan, deploy and smoke-test Ray Serve LLM RayServices on KubeRay.",
        epilog=exitcodes.EPILOG + ".",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text, examples) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                    epilog="examples:\n" + "\n".join("  " + line for line in examples.splitlines())
                                    + "\n\n" + exitcodes.EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        sub_parser.set_defaults(_module=module)
        if argv[:1] == [name]:  # only the chosen subcommand's module is imported
            importlib.import_module(module).add_arguments(sub_parser)
    return parser


def quiet_imported_libraries() -> None:
    """The offline checks import Ray Serve LLM and vLLM for their models; importing Ray Serve LLM puts a JSON handler
    on the root logger (ray/llm/_internal/serve/observability/logging/setup.py), so vLLM's import-time notices about
    this machine ("Triton not installed or not compatible", no GPU) would print before the command's own output.
    Only vLLM's records below ERROR are dropped, only in this process: an error still prints, a vLLM that configures
    its own logging (`kuberay-llm bench`) sets its own level, and VLLM_LOGGING_LEVEL, where set, is the level."""
    level = logging.getLevelName(os.environ.get("VLLM_LOGGING_LEVEL", "ERROR").upper())
    logging.getLogger("vllm").setLevel(level if isinstance(level, int) else logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_imported_libraries()
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return exitcodes.USAGE
        module = importlib.import_module(args._module)
        return module.run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # the shell's code for SIGINT


if __name__ == "__main__":
    sys.exit(main())
