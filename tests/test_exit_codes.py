"""One exit-code table for every command (kuberay_llm/exitcodes.py): argparse errors are usage errors, every
command's --help shows the table, and the README's table is the module's."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from overlay_helpers import REPO
from kuberay_llm import cli, exitcodes


def run(*args: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "kuberay_llm.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_an_unknown_flag_is_a_usage_error(command):
    result = run(command, "--no-such-flag")
    assert result.returncode == exitcodes.USAGE, result.stderr
    assert re.search(r"error: (unrecognized arguments: --no-such-flag|the following arguments are required)",
                     result.stderr), result.stderr


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_shows_the_exit_codes(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert exitcodes.EPILOG in result.stdout


def test_no_command_is_a_usage_error():
    assert run().returncode == exitcodes.USAGE


def _table(text: str) -> dict[int, str]:
    return {int(code): meaning.strip() for code, meaning in re.findall(r"^\|\s*(\d)\s*\|\s*(.+?)\s*\|\s*$", text, re.M)}


def test_the_readme_table_is_the_modules():
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- exit-codes:begin -->", 1)[1].split("<!-- exit-codes:end -->", 1)[0]
    assert _table(block) == _table(exitcodes.__doc__)
    values = {v for k, v in vars(exitcodes).items() if k.isupper() and isinstance(v, int)}
    assert values == set(_table(exitcodes.__doc__))


def test_a_bad_log_lines_value_is_a_usage_error_not_a_traceback(monkeypatch):
    from kuberay_llm import settings
    from kuberay_llm.harness.errors import UsageError

    monkeypatch.setenv("KUBERAY_LLM_LOG_LINES", "ten")
    with pytest.raises(UsageError, match=r"KUBERAY_LLM_LOG_LINES: 'ten' is not a positive whole number"):
        settings.log_lines()


def test_a_missing_tool_is_unavailable(tmp_path, monkeypatch, capsys):
    # in this process: a CLI subprocess of validate imports Ray's LLM config, vLLM and torch (~10 s on 2 cores)
    monkeypatch.setenv("KUBERAY_LLM_BIN", str(tmp_path))
    code = cli.main(["validate", "small"])
    err = capsys.readouterr().err
    assert code == exitcodes.UNAVAILABLE, err
    assert "run `make tools`" in err and "Traceback" not in err
