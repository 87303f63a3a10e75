"""harness/startup.py on vLLM's own start-up lines: a real vLLM 0.29 CPU start (tests/data/vllm/, its first line
says how it was made), cut where a watcher could have read it, and a replica that restarted."""

from __future__ import annotations

from pathlib import Path

from kuberay_llm.harness import startup

LOG = (Path(__file__).parent / "data" / "vllm" / "cpu-0.29-start.log").read_text()


def cut_before(marker: str) -> str:
    return LOG[:LOG.index(marker)]


def keys(text: str) -> list[str]:
    return [p.key for p in startup.phases(text)]


def test_a_whole_start_reaches_every_phase_the_cpu_build_logs_in_order():
    assert keys(LOG) == ["engine", "load", "loaded", "compile", "compiled", "kv", "ready"]  # no CUDA graphs on CPU
    line = startup.summary(startup.phases(LOG))
    assert line.startswith("vLLM 0.29.0: engine configured, loading weights, weights loaded (0.00 s), torch.compile, ")
    assert line.endswith("engine ready (41.98 s)") and "now:" not in line


def test_a_start_read_midway_says_what_the_engine_is_doing_now():
    assert startup.summary(startup.phases(cut_before("Loading weights took"))) == \
        "vLLM 0.29.0: engine configured, loading weights | now: loading weights"
    assert startup.summary(startup.phases(cut_before("saved AOT compiled function"))).endswith(
        "torch.compile | now: torch.compile")
    assert startup.summary(startup.phases(cut_before("init engine"))).endswith("| now: capturing CUDA graphs or warming up")


def test_no_line_yet():
    assert startup.summary(startup.phases("")) == "vLLM: no start-up line yet (starting the engine)"


def test_a_restarted_replica_counts_only_its_last_start():
    """Serve retries a replica whose constructor failed: the second start's phases, not the first one's."""
    first = LOG.replace("12-07 20:", "12-07 19:")  # the same start an hour earlier, completed
    second = cut_before("Loading weights took")
    assert keys(first + "\n" + second) == ["engine", "load"]
