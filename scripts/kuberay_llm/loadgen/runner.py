"""Runs `vllm bench serve` once per concurrency level in one process (vLLM's own CLI parser and benchmark
main; importing vLLM takes 15-30 s, so one import serves the whole sweep).

usage (internal, started by kuberay_llm.loadgen.sweep): python -m kuberay_llm.loadgen.runner SPEC.json
SPEC: {"argv": [["--base-url", ...], ...], "results": ["/path/c1.json", ...]}: one `vllm bench serve`
argument list per level; each level's result dict is written to the matching path.
"""

from __future__ import annotations

import json
import sys


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    import vllm

    print("RUNNER_VLLM " + str(getattr(vllm, "__version__", "unknown")), flush=True)

    for argv, path in zip(spec["argv"], spec["results"]):
        parser = FlexibleArgumentParser(prog="vllm bench serve")
        add_cli_args(parser)
        args = parser.parse_args(argv)
        print("RUNNER_START " + json.dumps(argv), flush=True)
        result = bench_main(args)
        with open(path, "w") as f:
            json.dump(result, f, default=str)
        print("RUNNER_DONE " + path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
