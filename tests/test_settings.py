"""Settings in one place: every KUBERAY_LLM_* variable is parsed by kuberay_llm/settings.py when it is used, a bad
value of each kind exits 2 naming the variable and its form, and no other module of the package reads one."""

from __future__ import annotations

import ast
import inspect
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kuberay_llm import cli, exitcodes, settings, toolchain
from kuberay_llm.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "scripts" / "kuberay_llm"
VARIABLE = re.compile(r"^KUBERAY_LLM_[A-Z0-9_]+$")


class Started(Exception):
    """Raised where a command would start real work: the bad setting should have stopped it before."""


@pytest.fixture
def nothing_starts(monkeypatch):
    from kuberay_llm.cluster import network
    from kuberay_llm.local import command

    def refuse(*_args, **_kwargs):
        raise Started("the command went past its settings")

    monkeypatch.setattr(command, "require_stack", refuse)
    monkeypatch.setattr(command, "stop_kept", refuse)
    monkeypatch.setattr(network, "require_root", refuse)


# One bad value per kind of setting, through the command that reads it: (variable, value, argv, message).
BAD = [
    ("KUBERAY_LLM_LOCAL_TIMEOUT", "abc", ["local"],
     "KUBERAY_LLM_LOCAL_TIMEOUT: 'abc' is not a duration (use e.g. 90s, 15m, 1h)"),
    ("KUBERAY_LLM_TOOL_TIMEOUT", "5x", ["render", "{overlay outside the render cache}"],
     "KUBERAY_LLM_TOOL_TIMEOUT: '5x' is not a duration (use e.g. 90s, 15m, 1h)"),
    ("KUBERAY_LLM_LOCAL_KV_CACHE_BYTES", "0", ["local"],
     "KUBERAY_LLM_LOCAL_KV_CACHE_BYTES: '0' is not a positive whole number of bytes (e.g. 268435456)"),
    ("KUBERAY_LLM_GCS_PORT", "70000", ["local", "--stop"],
     "KUBERAY_LLM_GCS_PORT: '70000' is not a TCP port (1-65535, e.g. 6380)"),
    ("KUBERAY_LLM_WORK", "", ["local"],
     f"KUBERAY_LLM_WORK: empty; set it to a directory or unset it (default {REPO / '.work'})"),
    ("KUBERAY_LLM_GPUS", "yes", ["cluster", "up"],
     "KUBERAY_LLM_GPUS: 'yes' is not one of auto, none (default auto)"),
    ("KUBERAY_LLM_CLUSTER_POD_CIDR", "10.0.0.300/16", ["cluster", "up"],
     "KUBERAY_LLM_CLUSTER_POD_CIDR: '10.0.0.300/16' is not a network (e.g. 10.244.0.0/16)"),
    ("KUBERAY_LLM_CLUSTER_START_TIMEOUT", "soon", ["cluster", "up"],
     "KUBERAY_LLM_CLUSTER_START_TIMEOUT: 'soon' is not a duration (use e.g. 90s, 15m, 1h)"),
]


@pytest.mark.parametrize(("variable", "value", "argv", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_exits_2_naming_the_variable_and_its_form(variable, value, argv, message, monkeypatch, capsys,
                                                              nothing_starts, tmp_path):
    from hardening_helpers import wrapper_overlay

    # tests/conftest.py keeps each repository overlay's build: a wrapper outside it is built (and times out) anew
    argv = [str(wrapper_overlay(tmp_path, "small", [])) if a.startswith("{") else a for a in argv]
    monkeypatch.setenv(variable, value)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == exitcodes.USAGE == 2, err
    assert err == f"error: {message}\n"


def readers() -> dict[str, tuple]:
    """Each settings function that reads a variable -> (its variable, its call with the default it needs)."""
    found = {}
    for name, function in inspect.getmembers(settings, inspect.isfunction):
        if function.__module__ != settings.__name__ or name.startswith("_"):
            continue
        names = re.findall(r'"(KUBERAY_LLM_[A-Z0-9_]+)"', inspect.getsource(function))
        if names:
            params = inspect.signature(function).parameters
            found[name] = (names[0], (lambda f=function, p=params: f(Path("/default")) if p else f()))
    return found


def test_every_setting_refuses_a_bad_value_with_exit_2(monkeypatch):
    """Every variable but the nvidia-smi binary (any name is one) refuses a junk value or an empty one."""
    found = readers()
    assert len(found) >= 28, sorted(found)
    for name, (variable, read) in found.items():
        if variable == "KUBERAY_LLM_NVIDIA_SMI":
            continue
        errors = []
        for junk in ("junk!", "", "-1"):
            monkeypatch.setenv(variable, junk)
            try:
                read()
            except UsageError as err:
                errors.append(err)
        monkeypatch.delenv(variable)
        assert errors, f"settings.{name}() accepts every junk value of {variable}"
        assert all(str(e).startswith(f"{variable}: ") and e.exit_code == 2 for e in errors), (name, errors)
        read()  # its default is valid


def test_durations_keep_the_plain_seconds_they_took_before():
    assert settings.parse_duration("120", what="x") == 120.0
    assert settings.parse_duration("15m", what="x") == 900.0


def test_local_help_works_whatever_a_setting_holds():
    """`KUBERAY_LLM_LOCAL_TIMEOUT=abc kuberay-llm local --help` ended in a traceback (read at import)."""
    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "local", "--help"], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO,
                          env={**os.environ, "KUBERAY_LLM_LOCAL_TIMEOUT": "abc"})
    assert proc.returncode == 0 and "usage: kuberay-llm local" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_command_help_imports_with_every_setting_bad(monkeypatch, capsys):
    for name, (variable, _) in readers().items():
        monkeypatch.setenv(variable, "junk!")
    for command in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0, (command, capsys.readouterr().err)


# --- no other module reads a variable ------------------------------------------------------------------------

READERS = ("environ.get", "getenv", "environ.setdefault", "environ.pop")


def _names_a_variable(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(VARIABLE.match(node.value))
    # a name built at run time: f"KUBERAY_LLM_{what}"
    return (isinstance(node, ast.JoinedStr) and bool(node.values) and isinstance(node.values[0], ast.Constant)
            and bool(re.match(r"^KUBERAY_LLM_[A-Z0-9_]*$", str(node.values[0].value))))


def variable_reads(path: Path) -> list[str]:
    """`line: code` of every read of a KUBERAY_LLM_* variable in one module: os.environ["..."], os.environ.get,
    os.getenv, `"..." in os.environ`, or a settings helper given the name (settings.duration("...")). The name in
    a message, a help text or a finding's location is not a read."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text())):
        named = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            named = node.slice
        elif isinstance(node, ast.Call) and node.args and (
                ast.unparse(node.func).endswith(READERS) or ast.unparse(node.func).startswith("settings.")):
            named = node.args[0]
        elif isinstance(node, ast.Compare) and any(ast.unparse(c).endswith("environ") for c in node.comparators):
            named = node.left
        if named is not None and _names_a_variable(named):
            reads.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(reads, key=lambda r: int(r.split(":")[0]))


def import_time_reads(path: Path) -> list[str]:
    """Calls of settings.* at module or class level: they would read the environment at import."""
    tree = ast.parse(path.read_text())
    found = []
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    top += [n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for statement in top:
        for node in ast.walk(statement):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "settings"
                    and not _inside_lambda(statement, node)):
                found.append(f"{node.lineno}: settings.{node.func.attr}()")
    return found


def _inside_lambda(root: ast.AST, target: ast.AST) -> bool:
    return any(target in ast.walk(n) for n in ast.walk(root) if isinstance(n, ast.Lambda))


def test_no_module_but_settings_reads_a_kuberay_llm_variable():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "settings.py":
            continue
        reads = variable_reads(path)
        if reads:
            offenders[str(path.relative_to(REPO))] = reads
    assert offenders == {}, f"read these in kuberay_llm/settings.py (a function per variable) instead: {offenders}"


def test_no_module_reads_a_setting_at_import():
    offenders = {str(p.relative_to(REPO)): r for p in sorted(PACKAGE.rglob("*.py")) if (r := import_time_reads(p))}
    assert offenders == {}


def test_the_checks_find_what_they_look_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('import os\nfrom kuberay_llm import settings\nT = float(os.environ.get("KUBERAY_LLM_X", "1"))\n'
                      'U = settings.wait_timeout()\nF = lambda: settings.wait_timeout()\n'
                      'def f():\n    return os.environ["KUBERAY_LLM_Y"], settings.wait_timeout(), "see KUBERAY_LLM_Z"\n'
                      'G = os.getenv(f"KUBERAY_LLM_{1}")\nH = f"KUBERAY_LLM_W={1} is wrong"\n'
                      'I = "KUBERAY_LLM_V" in os.environ or settings.duration("KUBERAY_LLM_U", "1s")\n'
                      'J = Finding("KUBERAY_LLM_WAIT_TIMEOUT")\n')
    assert variable_reads(sample) == [
        "3: os.environ.get('KUBERAY_LLM_X', '1')", "7: os.environ['KUBERAY_LLM_Y']", "8: os.getenv(f'KUBERAY_LLM_{1}')",
        "10: 'KUBERAY_LLM_V' in os.environ", "10: settings.duration('KUBERAY_LLM_U', '1s')"]
    assert import_time_reads(sample) == ["4: settings.wait_timeout()", "10: settings.duration()"]


def test_the_package_has_one_settings_module():
    assert not (PACKAGE / "harness" / "settings.py").exists()
    assert toolchain.work_dir() == settings.work_dir(toolchain.REPO_ROOT / ".work")


# --- third-party log lines ---------------------------------------------------------------------------------------

def test_the_cli_drops_vllm_notices_below_error_unless_asked(monkeypatch):
    logger = logging.getLogger("vllm")
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    cli.quiet_imported_libraries()
    assert logger.level == logging.ERROR
    assert logger.isEnabledFor(logging.ERROR) and not logger.isEnabledFor(logging.WARNING)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "debug")
    cli.quiet_imported_libraries()
    assert logger.level == logging.DEBUG
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "loud")
    cli.quiet_imported_libraries()
    assert logger.level == logging.ERROR


@pytest.mark.slow  # a fresh process imports Ray Serve LLM, vLLM and torch (~10-30 s on 2 cores)
@pytest.mark.parametrize("vllm_env", [{}, {"VLLM_LOGGING_LEVEL": "ERROR", "VLLM_CONFIGURE_LOGGING": "0"}],
                         ids=["plain", "vllm-logging-off"])
def test_validate_prints_no_log_line_of_an_imported_library(vllm_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}  # earlier checks here set some
    proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "validate", "overlays/small"], capture_output=True,
                          text=True, timeout=300, check=False, cwd=REPO, env={**env, **vllm_env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    foreign = [line for line in lines if not line.startswith(("ok ", "validated "))]
    assert foreign == [], foreign
    assert lines[0].startswith("ok      overlays/small (")
