"""Failures users reported on the public KubeRay, Ray and vLLM trackers (tests/data/reported-failures.yaml): each is
reproduced as a change to a rendered overlay and must fail `kuberay-llm validate` with the reported cause (or, for
`severity: warning`, pass it with the warning users needed). Runs the real pinned kustomize, kubeconform, Ray's
schema classes (and vLLM's own arguments and configuration classes where an entry needs them)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from kuberay_llm import render, validate
from kuberay_llm.render import Rendered

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "reported-failures.yaml").read_text())["failures"]
CAUGHT = [f for f in CORPUS if f.get("caught", True)]
_PART = re.compile(r'"([^"]+)"|([^.\[\]]+)|\[(\d+)\]')


def _parts(path: str) -> list:
    return [int(i) if i else (q or n) for q, n, i in _PART.findall(path)]


def _apply(node, parts, op, value=None):
    for part in parts[:-1]:
        if isinstance(part, int) or part in node:
            node = node[part]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    if op == "delete":
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value


def _resource_key(parts):
    """`...limits.nvidia.com/gpu`: a resource name is one key though it has dots."""
    for i, part in enumerate(parts):
        if part in ("limits", "requests") and i + 1 < len(parts):
            return parts[: i + 1] + [".".join(map(str, parts[i + 1:]))]
    return parts


def mutated(entry) -> Rendered:
    base = render.render_overlay(entry["overlay"])
    objects = copy.deepcopy(base.objects)
    rs = next(o for o in objects if o.get("kind") == "RayService")
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    for change in entry["change"]:
        op = "delete" if "delete" in change else "set"
        where, _, path = change[op].partition(":")
        target = rs if where == "rs" else serve
        _apply(target, _resource_key(_parts(path)), op, change.get("value"))
    rs["spec"]["serveConfigV2"] = yaml.safe_dump(serve, sort_keys=False)
    return Rendered(source=f"{base.source} ({entry['link'].rsplit('/', 3)[-3]}#{entry['link'].rsplit('/', 1)[-1]})",
                    objects=objects)


@pytest.fixture(scope="module")
def outcomes():
    """Every caught entry validated in one run (one kubeconform start), by link."""
    sources = [(e["link"], lambda e=e: mutated(e)) for e in CAUGHT]
    return dict(zip([e["link"] for e in CAUGHT], validate.validate_sources(sources)))


def test_the_corpus_is_large_and_sourced():
    assert len(CAUGHT) >= 60
    for entry in CORPUS:
        assert re.match(r"^https://github\.com/[\w.-]+/[\w.-]+/(issues|pull)/\d+$", entry["link"]), entry
        assert entry.get("why") if entry.get("caught") is False else entry.get("expect"), entry
    assert len({e["link"] for e in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("entry", CAUGHT, ids=[e["link"].split("github.com/")[1] for e in CAUGHT])
def test_reported_failure_is_caught(entry, outcomes):
    if entry.get("needs_vllm"):
        from kuberay_llm import vllm_check

        if not vllm_check.vllm_available():
            pytest.fail("vLLM is not installed: run `make setup-local` (part of `make setup`)", pytrace=False)
    outcome = outcomes[entry["link"]]
    if entry.get("severity") == "warning":  # what users needed told and were not: printed, not failing
        lines = [str(f) for f in outcome.findings if f.severity == "warning"]
        assert outcome.exit_code == validate.EXIT_VALID, "\n".join(str(f) for f in outcome.findings)
    else:
        lines = [str(f) for f in outcome.errors] + ([outcome.error] if outcome.error else [])
        assert outcome.exit_code == validate.EXIT_INVALID, "\n".join(lines)
    assert any(entry["expect"] in line for line in lines), f"{entry['what']}: expected {entry['expect']!r} in\n" + \
        "\n".join(lines)


def test_the_readme_lists_every_caught_report():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- corpus:begin -->", 1)[1].split("<!-- corpus:end -->", 1)[0]
    listed = set(re.findall(r"\]\((https://github\.com/[^)]+)\)", block))
    assert listed == {e["link"] for e in CAUGHT}
