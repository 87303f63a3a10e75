"""A sample of the generated bad input (tests/fuzz_preflight.py; `make fuzz` runs 5,000 cases): every case ends in
exit 1 or 2 naming file, object and field; none ends in a traceback or passes. Uses the real pinned kustomize,
helm, kubeconform and Ray's schema classes."""

import pytest

from fuzz_preflight import SEED, generate, run, summary

SAMPLE = 250


@pytest.mark.slow
def test_generated_bad_input_never_crashes_and_never_passes():
    results = run(generate(SAMPLE, SEED))
    bad = [f"{r.case.kind} {r.case.what}: exit {r.exit_code}: {r.output[:300]}"
           for r in results if r.traceback or r.silent or r.unnamed]
    assert not bad, summary(results) + "\n" + "\n".join(bad[:20])
    assert len(results) == SAMPLE
