"""argocd/health/<group>_<kind>/health.lua: the Argo CD health checks of RayService, RayCluster and Application,
judged by Argo CD's own engine: `argocd admin settings resource-overrides health` of the pinned Argo CD
(`make argocd`) loads argocd/argocd-cm.yaml and runs each script in Argo CD's gopher-lua VM with its helpers
and limits, against every fixture of the check's health_test.yaml (the layout of Argo CD's own
resource_customizations). There is no second Lua engine here, so there is nothing to drift."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HEALTH_DIR = REPO / "argocd" / "health"
ARGOCD_CM = REPO / "argocd" / "argocd-cm.yaml"
CHECKS = sorted(p.parent.name for p in HEALTH_DIR.glob("*/health.lua"))


def argocd_binary() -> Path:
    from kuberay_llm import toolchain

    try:
        return toolchain.tool("argocd")
    except Exception as exc:  # noqa: BLE001 - a missing binary fails the test with the make target
        pytest.fail(f"{exc} (`make argocd`)", pytrace=False)


def run_health(obj_path: Path, argocd_cm: Path = ARGOCD_CM) -> subprocess.CompletedProcess:
    return subprocess.run([str(argocd_binary()), "admin", "settings", "resource-overrides", "health", str(obj_path),
                           "--argocd-cm-path", str(argocd_cm)],
                          capture_output=True, text=True, timeout=60, check=False)


def argocd_health(obj_path: Path, argocd_cm: Path = ARGOCD_CM) -> dict:
    """Argo CD's verdict on one object: {"status", "message"}, parsed from the CLI's STATUS:/MESSAGE: lines."""
    proc = run_health(obj_path, argocd_cm)
    assert proc.returncode == 0, f"argocd admin ... health {obj_path.name} failed:\n{proc.stdout}{proc.stderr}"
    if proc.stdout.startswith("Health script is not configured"):
        return {"status": None, "message": proc.stdout.strip()}
    status, _, message = proc.stdout.partition("\nMESSAGE: ")
    assert status.startswith("STATUS: "), proc.stdout
    return {"status": status.removeprefix("STATUS: "), "message": message.removesuffix("\n")}


def cases() -> list:
    out = []
    for check in CHECKS:
        spec = yaml.safe_load((HEALTH_DIR / check / "health_test.yaml").read_text())
        for case in spec["tests"]:
            out.append(pytest.param(check, case, id=f"{check}:{Path(case['inputPath']).stem}"))
    return out


def test_health_checks_exist_for_the_ray_kinds_and_applications():
    assert CHECKS == ["argoproj.io_Application", "ray.io_RayCluster", "ray.io_RayService"]


@pytest.fixture(scope="module")
def verdicts() -> dict[Path, dict]:
    """Argo CD's verdict on every fixture, the CLI runs side by side (each waits on its informers ~0.5 s)."""
    paths = [HEALTH_DIR / p.values[0] / p.values[1]["inputPath"] for p in cases()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(paths, pool.map(argocd_health, paths)))


@pytest.mark.parametrize(("check", "case"), cases())
def test_argo_cd_reports_the_expected_status_and_message(verdicts, check, case):
    expected = {"status": case["healthStatus"]["status"], "message": case["healthStatus"].get("message", "")}
    assert verdicts[HEALTH_DIR / check / case["inputPath"]] == expected


@pytest.mark.parametrize("check", CHECKS)
def test_every_fixture_is_listed_in_health_test_yaml(check):
    spec = yaml.safe_load((HEALTH_DIR / check / "health_test.yaml").read_text())
    listed = sorted(case["inputPath"] for case in spec["tests"])
    on_disk = sorted(f"testdata/{p.name}" for p in (HEALTH_DIR / check / "testdata").glob("*.yaml"))
    assert listed == on_disk


def test_rayservice_fixtures_cover_every_health_state():
    spec = yaml.safe_load((HEALTH_DIR / "ray.io_RayService" / "health_test.yaml").read_text())
    assert {c["healthStatus"]["status"] for c in spec["tests"]} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_a_changed_status_changes_the_verdict(tmp_path):
    """The runner can fail: the healthy DeepSeek fixture with its application DEPLOY_FAILED is Degraded."""
    obj = yaml.safe_load((HEALTH_DIR / "ray.io_RayService" / "testdata" / "healthy-deepseek.yaml").read_text())
    obj["status"]["activeServiceStatus"]["applicationStatuses"]["llm_app"]["status"] = "DEPLOY_FAILED"
    path = tmp_path / "failed.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert argocd_health(path) == {"status": "Degraded", "message": "Serve application llm_app is DEPLOY_FAILED"}


def test_without_argocd_cm_argo_cd_has_no_health_check_for_ray_kinds(tmp_path):
    """Argo CD ships none for ray.io: without our argocd-cm keys it says so instead of judging."""
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    cm["data"] = {}
    empty = tmp_path / "argocd-cm.yaml"
    empty.write_text(yaml.safe_dump(cm))
    verdict = argocd_health(HEALTH_DIR / "ray.io_RayService" / "testdata" / "healthy-deepseek.yaml", empty)
    assert verdict == {"status": None, "message": "Health script is not configured for 'ray.io/RayService'"}


def test_a_script_error_is_reported_by_argo_cd(tmp_path):
    """Lua 5.2+ syntax (integer division) does not load in Argo CD's gopher-lua: Argo CD fails the check."""
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    cm["data"]["resource.customizations.health.ray.io_RayService"] = "local a = 7 // 2\nreturn {status = 'Healthy'}\n"
    broken = tmp_path / "argocd-cm.yaml"
    broken.write_text(yaml.safe_dump(cm))
    proc = run_health(HEALTH_DIR / "ray.io_RayService" / "testdata" / "healthy-deepseek.yaml", broken)
    assert proc.returncode != 0
    fatal = [json.loads(line)["msg"] for line in proc.stderr.splitlines()
             if line.startswith("{") and json.loads(line).get("level") == "fatal"]
    assert fatal == ["failed to get resource health for llm-gke-a3-deepseek/deepseek-r1: "
                     "<string> line:1(column:14) near '/':   syntax error\n"], proc.stderr
