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


# The kinds of generated input that once passed with exit 0, applied to every overlay's rendered RayService: each
# must fail naming the source, the object and the field.
def _int32(rs):
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = 10 ** 30


def _no_metadata(rs):
    rs.pop("metadata")


def _no_name(rs):
    rs["metadata"].pop("name")


def _no_image(rs):
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("image")


def _kind_case(rs):
    rs["kind"] = "Rayservice"


MUTATIONS = {"int32": (_int32, "maxReplicas=1000000000000000000000000000000"),
             "no-metadata": (_no_metadata, ": metadata: Required value"),
             "no-name": (_no_name, ": metadata.name: Required value"),
             "no-image": (_no_image, ".containers[0].image: Required value"),
             "kind-case": (_kind_case, "kind=Rayservice: no matches for kind")}


@pytest.mark.slow
def test_the_mutations_that_once_passed_fail_on_every_overlay(tmp_path):
    from preflight_cases import run_cases

    from kuberay_llm import render

    bases = {name: render.render_overlay(name).objects for name in render.overlay_names()}
    cases = {f"{overlay}-{kind}": (overlay, lambda objects, rs, m=mutate: m(rs))
             for overlay in bases for kind, (mutate, _) in MUTATIONS.items()}
    results = run_cases(cases, bases, tmp_path)
    for name, (code, found) in results.items():
        kind = next(k for k in MUTATIONS if name.endswith(k))
        named = [line for line in found if line.startswith(f"error: {name}.yaml: ") and MUTATIONS[kind][1] in line]
        assert code == 1 and named, (name, code, found)
