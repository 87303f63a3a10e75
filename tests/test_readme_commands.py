"""Every command line in README.md's shell blocks (and in each `kuberay-llm COMMAND --help`'s examples) works
as pasted into a clone after `make setup`:

- `make TARGET`: the target exists in the Makefile;
- `kuberay-llm ...`: the CLI's own parser accepts the arguments (a renamed flag or subcommand fails here), and
  the offline commands (`plan`) run for real and exit 0;
- a RayService, Service or overlay name a command refers to is one the overlays really render
  (`kuberay-llm wait llama-8b` after `kuberay-llm apply small`);
- any other program (kubectl, helm, curl, ...) is one the README says where to get; the list is below.

Commands that need a cluster, root or a GPU are parsed, not run: the control-plane and local-cluster tests run
them against real clusters.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kuberay_llm import cli
from kuberay_llm.render import overlay_names, render_overlay

REPO = Path(__file__).resolve().parents[1]
# Programs the README's commands use besides make and kuberay-llm, each introduced in its prose.
OTHER_PROGRAMS = {"helm", "kubectl", "kustomize", "curl", "read", "printf", "unset", "export"}
SUBSTITUTION = re.compile(r'"?\$\((kuberay-llm [^)]*)\)"?')


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S):
        pending = ""
        for line in block.splitlines():
            if not pending:
                line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
                if not line or line.startswith("#"):
                    continue
            pending = f"{pending}\n{line}" if pending else line
            if pending.count("'") % 2 == 0:  # a quoted argument (curl's JSON body) may span lines
                lines.append(pending)
                pending = ""
        assert not pending, f"README.md: an unclosed quote in a shell block: {pending}"
    return lines


def help_example_lines() -> list[str]:
    lines = []
    for _, _, examples in cli.COMMANDS.values():
        for line in examples.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if "|" in line:  # `kuberay-llm render X | kubectl diff -f -`: the first command
                line = line.split("|")[0].strip()
            lines.append(line)
    return lines


def commands(line: str) -> list[list[str]]:
    """The simple commands of one line: split on && ; and |, `sudo` dropped, $(kuberay-llm ...) replaced by
    a placeholder path (and returned as a command of its own)."""
    inner = [shlex.split(m) for m in SUBSTITUTION.findall(line)]
    line = SUBSTITUTION.sub("SUBSTITUTED_PATH", line)
    out = []
    for part in re.split(r"&&|;|\|", line):
        words = shlex.split(part)
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words:
            out.append(words)
    return out + inner


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", (REPO / "Makefile").read_text(), re.M))


ALL = [(f"README: {line}", words) for line in readme_lines() for words in commands(line)] + \
      [(f"kuberay-llm --help example: {line}", words) for line in help_example_lines() for words in commands(line)]


@pytest.mark.parametrize("where,words", ALL, ids=[w for w, _ in ALL])
def test_command_is_known(where, words):
    program = words[0]
    if program == "make":
        targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        missing = sorted(set(targets) - make_targets())
        assert not missing, f"{where}: the Makefile has no target {', '.join(missing)}"
    elif program == "kuberay-llm":
        parser = cli.build_parser(words[1:])
        try:
            parser.parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"{where}: kuberay-llm refuses {' '.join(words[1:])!r} (exit {exc.code})")
    else:
        assert program in OTHER_PROGRAMS, \
            f"{where}: {program} is neither make, kuberay-llm nor a program the README introduces"


def rayservice_names() -> dict[str, str]:
    """overlay -> the name of the RayService it renders."""
    names = {}
    for overlay in overlay_names():
        for obj in render_overlay(overlay).objects:
            if obj.get("kind") == "RayService":
                names[overlay] = obj["metadata"]["name"]
    return names


def test_names_the_readme_commands_use_are_rendered():
    """`kuberay-llm wait|smoke|status|diagnose|delete NAME` and kubectl's rayservice/svc names exist; an
    overlay given to apply/plan/local exists."""
    names = rayservice_names()
    rendered = set(names.values()) | {"local-cpu-llm"}  # the local cluster's tiny overlay keeps local-cpu's name
    assert names.get("local-cpu") == "local-cpu-llm", names
    problems = []
    for where, words in ALL:
        if words[0] == "kuberay-llm" and len(words) > 2:
            command, target = words[1], words[2]
            if command in ("wait", "smoke", "status", "diagnose", "delete", "bench") and not target.startswith("-"):
                if target not in rendered:
                    problems.append(f"{where}: no overlay renders a RayService named {target}")
            if command in ("apply", "plan", "local", "render", "validate") and not target.startswith(("-", "overlays/")) \
                    and target != "SUBSTITUTED_PATH" and target not in names:
                problems.append(f"{where}: no overlay {target}")
        if words[0] == "kubectl":
            for word in words:
                match = re.match(r"(?:svc/)?(.+?)-(?:head|serve)-svc$", word)
                if match and match.group(1) not in rendered:
                    problems.append(f"{where}: no RayService {match.group(1)} behind Service {word}")
            if words[1:3] == ["get", "rayservice"] and words[3] not in rendered:
                problems.append(f"{where}: no RayService {words[3]}")
            if words[1:3] == ["apply", "-k"] and not (REPO / words[3] / "kustomization.yaml").is_file():
                problems.append(f"{where}: no kustomization in {words[3]}")
    assert not problems, "\n".join(problems)


def test_the_readme_commands_we_can_run_here_run():
    """The offline ones, for real: the planner's examples exit 0."""
    ran = 0
    for where, words in ALL:
        if words[:2] == ["kuberay-llm", "plan"]:
            result = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", *words[1:]], cwd=REPO,
                                    capture_output=True, text=True, timeout=300, check=False)
            assert result.returncode == 0, f"{where}: exit {result.returncode}\n{result.stderr[-2000:]}"
            ran += 1
    assert ran >= 3, "the README and --help lost their planner examples"


def test_a_renamed_flag_is_caught():
    """The check above fails for a flag the CLI does not have (so it is not vacuous)."""
    parser = cli.build_parser(["wait"])
    with pytest.raises(SystemExit):
        parser.parse_args(["wait", "llama-8b", "--namespace-typo", "llm"])
