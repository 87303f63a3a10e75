"""charts/ray-llm: the committed README is helm-docs' fresh output, and the helm-unittest suites pass (and can
fail) under the pinned helm with the plugin `make helm-unittest` installs into ./bin/helm-plugins."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_chart_parity import CHART, _tool


def copy_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "ray-llm"
    shutil.copytree(CHART, chart)
    return chart


def helm_docs(chart: Path) -> str:
    subprocess.run([str(_tool("helm-docs")), "--chart-search-root", str(chart), "--template-files", "README.md.gotmpl"],
                   capture_output=True, text=True, check=True, timeout=120, cwd=chart)
    return (chart / "README.md").read_text()


def test_committed_readme_is_the_fresh_helm_docs_output(tmp_path):
    assert helm_docs(copy_chart(tmp_path)) == (CHART / "README.md").read_text(), \
        "charts/ray-llm/README.md is stale: run `make chart-docs`"


def test_readme_check_fails_when_a_value_comment_changes(tmp_path):
    chart = copy_chart(tmp_path)
    values = chart / "values.yaml"
    values.write_text(values.read_text().replace("# -- Name of the worker group.", "# -- The worker group."))
    fresh = helm_docs(chart)
    assert fresh != (CHART / "README.md").read_text()
    assert "| worker.groupName | string | `\"gpu-group\"` | The worker group. |" in fresh


def test_every_value_is_documented(tmp_path):
    out = helm_docs(copy_chart(tmp_path))
    assert "| serve.model.id |" in out and "| gke.machine |" in out
    undocumented = [line for line in out.splitlines() if line.startswith("| ") and line.rstrip().endswith("|  |")]
    assert not undocumented, undocumented


def helm_unittest(chart: Path) -> subprocess.CompletedProcess:
    helm = _tool("helm")
    plugins = helm.parent / "helm-plugins"
    if not any(plugins.glob("*/plugin.yaml")):
        pytest.fail(f"{plugins} has no helm-unittest plugin: run `make helm-unittest`", pytrace=False)
    _tool("helm-unittest")
    env = {**os.environ, "HELM_PLUGINS": str(plugins)}
    return subprocess.run([str(helm), "unittest", "--strict", "--color=false", str(chart)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_helm_unittest_suites_pass():
    proc = helm_unittest(CHART)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suites = len(list((CHART / "tests").glob("*_test.yaml")))
    assert suites >= 3 and f"Test Suites: {suites} passed, {suites} total" in proc.stdout


def test_helm_unittest_fails_on_a_wrong_expectation(tmp_path):
    chart = copy_chart(tmp_path)
    suite = chart / "tests" / "rayservice_test.yaml"
    suite.write_text(suite.read_text().replace('value: "2.61.0"', 'value: "2.60.0"'))
    proc = helm_unittest(chart)
    assert proc.returncode != 0
    assert "FAIL  RayService" in proc.stdout
    assert "derives rayVersion from the image tag" in proc.stdout
