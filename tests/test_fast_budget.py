"""The fast tests' time budget (tests/fast_budget.py, summed by tests/conftest.py) fails a run over it."""

from __future__ import annotations

import fast_budget


def test_within_the_budget_passes_and_over_it_fails_naming_the_total():
    assert fast_budget.verdict(59.0, 700, budget=60, factor=1) is None
    line = fast_budget.verdict(61.5, 700, budget=60, factor=1)
    assert line and "the 700 fast tests took 61.5s, over their budget of 60s" in line


def test_slowdown_scales_the_budget(monkeypatch):
    monkeypatch.setenv("KUBERAY_LLM_TEST_SLOWDOWN", "3")
    assert fast_budget.allowed(60) == 180
    assert fast_budget.verdict(150, 700, budget=60) is None
    assert "KUBERAY_LLM_TEST_SLOWDOWN=3" in fast_budget.verdict(200, 700, budget=60)


def test_this_run_counts_this_test_as_fast(request):
    assert request.node.get_closest_marker("fast")
