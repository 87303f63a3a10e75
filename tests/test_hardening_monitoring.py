"""Observability: the alert rules run under the pinned promtool (`promtool check rules` and unit tests with series
shaped as the exporters write them), every metric they read exists in the pinned Ray's dashboards or KubeRay's
operator metrics, the chart renders the same rules, PodMonitor and dashboards as the components, and the
dashboards on disk are what the pinned Ray generates (`make dashboards`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import yaml

from hardening_helpers import COMPONENTS_DIR, REPO
from test_chart_parity import CHART, RELEASE, _tool

ALERTS = COMPONENTS_DIR / "monitoring" / "alerts.yaml"
PROMTOOL_TESTS = REPO / "tests" / "promtool" / "ray-llm-alerts.test.yaml"


def promtool(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(_tool("promtool")), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          check=False)


def write_rules(directory, spec: dict) -> None:
    (directory / "alerts.rules.yaml").write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
    shutil.copy(PROMTOOL_TESTS, directory / PROMTOOL_TESTS.name)


def test_promtool_checks_and_unit_tests_the_alert_rules(tmp_path):
    write_rules(tmp_path, yaml.safe_load(ALERTS.read_text())["spec"])
    check = promtool("check", "rules", "alerts.rules.yaml", cwd=tmp_path)
    assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check.stdout + check.stderr
    run = promtool("test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_unit_tests_fail_when_a_threshold_moves(tmp_path):
    spec = yaml.safe_load(ALERTS.read_text())["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["expr"] = rule["expr"].replace("> 0.9", "> 0.99")
    write_rules(tmp_path, spec)
    run = promtool("test", "rules", PROMTOOL_TESTS.name, cwd=tmp_path)
    assert run.returncode == 1
    assert "alertname: LLMKVCacheNearlyFull, time: 20m" in run.stdout + run.stderr


@pytest.fixture(scope="module")
def ray_dashboards() -> dict[str, str]:
    sys.path.insert(0, str(REPO / "hack" / "gen"))
    import grafana_dashboards

    return grafana_dashboards.generate()


def test_every_metric_the_alerts_read_exists_upstream(ray_dashboards):
    import json

    import apiserver_helpers  # noqa: F401 - puts tests/controlplane on the path
    from localcluster import kuberay_crd_dir

    exprs = [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["spec"]["groups"] for r in g["rules"]]
    used = set(re.findall(r"\b((?:ray|kuberay)_[a-z_]+)\b", " ".join(exprs)))
    panels = " ".join(t["expr"] for text in ray_dashboards.values() for p in json.loads(text).get("panels", [])
                      for t in p.get("targets", []))
    operator_metrics = (kuberay_crd_dir().parents[2] / "controllers/ray/metrics/ray_service_metrics.go").read_text()
    missing = [m for m in sorted(used) if m not in panels and f'"{m}"' not in operator_metrics]
    assert used and not missing, f"not in the pinned Ray's dashboards nor KubeRay's metrics: {missing}"


def test_the_dashboards_on_disk_are_the_pinned_rays(ray_dashboards):
    for directory in (COMPONENTS_DIR / "grafana-dashboards" / "dashboards", CHART / "dashboards"):
        on_disk = {p.stem: p.read_text() for p in directory.glob("*.json")}
        assert on_disk == ray_dashboards, f"{directory} is stale: run `make dashboards`"


def test_the_serve_llm_dashboard_shows_what_the_tiers_tell_users_to_watch(ray_dashboards):
    import json

    titles = {p.get("title") for p in json.loads(ray_dashboards["ray-serve-llm"])["panels"]}
    exprs = " ".join(t["expr"] for p in json.loads(ray_dashboards["ray-serve-llm"])["panels"] for t in p.get("targets", []))
    for metric in ("ray_vllm_time_to_first_token_seconds", "ray_vllm_request_time_per_output_token_seconds",
                   "ray_vllm_kv_cache_usage_perc", "ray_vllm_num_requests_running", "ray_vllm_num_requests_waiting"):
        assert metric in exprs, metric
    assert titles


def helm_template(*sets: str) -> list[dict]:
    args = [str(_tool("helm")), "template", RELEASE, str(CHART), "-f", str(CHART / "ci" / "small-values.yaml")]
    for s in sets:  # "json:" marks a --set-json value (helm's --set keeps 0.8 a string)
        args += ["--set-json", s[5:]] if s.startswith("json:") else ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def test_the_chart_renders_the_components_rules_podmonitor_and_dashboards():
    chart = helm_template("monitoring.enabled=true", "grafanaDashboards.enabled=true")
    for component, kind in (("monitoring", "PrometheusRule"), ("monitoring", "PodMonitor")):
        docs = [yaml.safe_load(p.read_text()) for p in (COMPONENTS_DIR / component).glob("*.yaml")]
        spec = next(d for d in docs if d and d.get("kind") == kind)["spec"]
        chart_spec = one(chart, kind)["spec"]
        if kind == "PodMonitor":  # the component's selector value is renamed by kustomize (name-references.yaml)
            spec["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "llama-8b"
        assert chart_spec == spec, kind
    chart_dashboards = one(chart, "ConfigMap")
    assert chart_dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    expected = {p.name: p.read_text() for p in (COMPONENTS_DIR / "grafana-dashboards" / "dashboards").glob("*.json")}
    assert chart_dashboards["data"] == expected


def test_the_chart_alert_thresholds_come_from_values():
    rule = one(helm_template("monitoring.enabled=true", "monitoring.alerts.ttftP95SecondsAbove=5",
                             "json:monitoring.alerts.kvCacheUsageAbove=0.8", "monitoring.alerts.requestsWaitingAbove=10"),
               "PrometheusRule")
    exprs = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert exprs["LLMTimeToFirstTokenHigh"].rstrip().endswith(") > 5")
    assert exprs["LLMKVCacheNearlyFull"].endswith("> 0.8")
    assert exprs["LLMRequestsWaiting"].endswith("> 10")
    assert "PrometheusRule" not in [o["kind"] for o in helm_template("monitoring.enabled=true",
                                                                       "monitoring.alerts.enabled=false")]


def test_the_chart_refuses_dashboards_it_does_not_have(tmp_path):
    chart = tmp_path / "ray-llm"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("dashboards"))
    proc = subprocess.run([str(_tool("helm")), "template", RELEASE, str(chart), "--set", "grafanaDashboards.enabled=true"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert ("grafanaDashboards.enabled needs dashboards/*.json in the chart: run `make dashboards` (generates them "
            "from the pinned Ray)") in proc.stderr
