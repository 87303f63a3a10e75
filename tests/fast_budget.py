"""The time budget of the tests `make test-fast` runs (every test not marked slow, controlplane or e2e).

tests/conftest.py sums their setup, call and teardown times; a run whose sum is over the budget fails with
`verdict`'s line, so a test that grows slow is marked slow (or made fast) instead of stretching the edit loop.
The budget is for 2 cores: the sum measured about 105 s under `make test-fast` (two xdist workers, each test
sharing the cores with the other worker's) and about 90 s one test at a time in `make test`; 150 s leaves room
for growth while keeping test-fast near a minute. KUBERAY_LLM_TEST_SLOWDOWN scales it on a slower or loaded
machine, as it scales the control-plane tests' timeouts.
"""

from __future__ import annotations

import os

FAST_BUDGET_S = 150.0


def slowdown() -> float:
    return float(os.environ.get("KUBERAY_LLM_TEST_SLOWDOWN", "1"))


def allowed(budget: float = FAST_BUDGET_S, factor: float | None = None) -> float:
    return budget * (slowdown() if factor is None else factor)


def verdict(seconds: float, count: int, budget: float = FAST_BUDGET_S, factor: float | None = None) -> str | None:
    """None within the budget, else the line that fails the run."""
    limit = allowed(budget, factor)
    if seconds <= limit:
        return None
    return (f"the {count} fast tests took {seconds:.1f}s, over their budget of {limit:.0f}s ({budget:.0f}s x "
            f"KUBERAY_LLM_TEST_SLOWDOWN={limit / budget:g}): make the slow ones fast or mark them slow")


def within(seconds: float, count: int) -> str:
    return f"{count} fast tests: {seconds:.1f}s of their {allowed():.0f}s budget"
