"""argocd/health/<group>_<kind>/health.lua: Argo CD resource health checks for RayService, RayCluster and
Application, run under Lua 5.1 (Argo CD's gopher-lua implements Lua 5.1) against the fixtures of each
check's health_test.yaml, in the layout of Argo CD's own resource_customizations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51", reason="lupa (test extra) provides Lua 5.1")

HEALTH_DIR = Path(__file__).resolve().parents[1] / "argocd" / "health"
CHECKS = sorted(p.parent.name for p in HEALTH_DIR.glob("*/health.lua"))
# What Argo CD's Lua VM offers a health script: base, table, string, math (no io, os, require, debug).
UNSAFE_GLOBALS = ["io", "os", "debug", "package", "require", "dofile", "loadfile", "load", "loadstring"]


def run_health(script: str, obj: dict) -> dict:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    for name in UNSAFE_GLOBALS:
        lua.globals()[name] = None
    assert lua.eval("_VERSION") == "Lua 5.1"
    lua.globals()["obj"] = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    assert result is not None, "the script returned nothing"
    return {"status": result["status"], "message": result["message"] or ""}


def cases() -> list:
    out = []
    for check in CHECKS:
        spec = yaml.safe_load((HEALTH_DIR / check / "health_test.yaml").read_text())
        for case in spec["tests"]:
            out.append(pytest.param(check, case, id=f"{check}:{Path(case['inputPath']).stem}"))
    return out


def test_health_checks_exist_for_the_ray_kinds_and_applications():
    assert CHECKS == ["argoproj.io_Application", "ray.io_RayCluster", "ray.io_RayService"]


@pytest.mark.parametrize(("check", "case"), cases())
def test_health_script_reports_the_expected_status_and_message(check, case):
    script = (HEALTH_DIR / check / "health.lua").read_text()
    obj = yaml.safe_load((HEALTH_DIR / check / case["inputPath"]).read_text())
    expected = {"status": case["healthStatus"]["status"], "message": case["healthStatus"].get("message", "")}
    assert run_health(script, obj) == expected


@pytest.mark.parametrize("check", CHECKS)
def test_every_fixture_is_listed_in_health_test_yaml(check):
    spec = yaml.safe_load((HEALTH_DIR / check / "health_test.yaml").read_text())
    listed = sorted(case["inputPath"] for case in spec["tests"])
    on_disk = sorted(f"testdata/{p.name}" for p in (HEALTH_DIR / check / "testdata").glob("*.yaml"))
    assert listed == on_disk


def test_rayservice_fixtures_cover_every_health_state():
    spec = yaml.safe_load((HEALTH_DIR / "ray.io_RayService" / "health_test.yaml").read_text())
    assert {c["healthStatus"]["status"] for c in spec["tests"]} == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_a_wrong_expectation_fails():
    """The runner can fail: the healthy DeepSeek fixture is not Degraded."""
    script = (HEALTH_DIR / "ray.io_RayService" / "health.lua").read_text()
    obj = yaml.safe_load((HEALTH_DIR / "ray.io_RayService" / "testdata" / "healthy-deepseek.yaml").read_text())
    assert run_health(script, obj)["status"] == "Healthy"
    obj["status"]["activeServiceStatus"]["applicationStatuses"]["llm_app"]["status"] = "DEPLOY_FAILED"
    assert run_health(script, obj) == {"status": "Degraded", "message": "Serve application llm_app is DEPLOY_FAILED"}


def test_scripts_are_lua_5_1_without_later_syntax():
    """goto, integer division and bitwise operators (Lua 5.2+) do not parse in gopher-lua."""
    lua = lua51.LuaRuntime()
    for check in CHECKS:
        source = (HEALTH_DIR / check / "health.lua").read_text()
        compiled = lua.eval("function(src) local f, err = loadstring(src); return err end")(source)
        assert compiled is None, f"{check}/health.lua: {compiled}"
    broken = lua.eval("function(src) local f, err = loadstring(src); return err end")("local a = 7 // 2")
    assert broken is not None
