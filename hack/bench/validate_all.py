"""Validate-all timing: `kuberay-llm validate` over every overlay, as a user runs it (a fresh process each time).

Prints the median wall time of RUNS runs and the CPU time (user + sys of the process and its children: kustomize,
kubeconform), which a busy shared machine inflates less than the wall time. The budget is 15 s of wall time on a
quiet 2-core machine.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("BENCH_VALIDATE_RUNS", "3"))
BUDGET_S = 15.0


def main() -> int:
    cli = Path(sys.executable).with_name("kuberay-llm")
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.run([str(cli), "validate", "-q"], cwd=REPO, capture_output=True, text=True, timeout=600)
        walls.append(time.monotonic() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr)
            return 1
    summary = proc.stdout.strip().splitlines()[-1]
    load = os.getloadavg()[0]
    print(f"validate-all ({summary}): median wall {statistics.median(walls):.1f}s, median CPU "
          f"{statistics.median(cpus):.1f}s over {RUNS} runs on {os.cpu_count()} cores, load average {load:.1f} "
          f"(budget {BUDGET_S:.0f}s wall on a quiet machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
