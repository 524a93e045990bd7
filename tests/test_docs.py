"""Every snippet of README.md and docs/*.md runs as written.

A fenced block says what it is by its language:

- ``python``: run, in order, in one namespace per file, with a temporary directory as the
  working directory (so what a snippet writes lands there);
- ``sh``: each command runs in bash, in a temporary directory that holds this checkout's
  ``scripts/`` and ``docs/``, with this checkout's ``fnet`` first on the path. The commands
  that set up the environment (``python3 -m venv``, ``. .venv/bin/activate``, ``pip
  install``) and run the test suite (``python -m pytest``) are what ``.ci/run`` does before
  and as this suite: the test checks that ``.ci/run`` does them;
- ``console``: ``$ command`` lines run the same way; each line shown after one that
  starts with a program's name and a colon (``fnet-train: error: ...``) must be a line of
  what the command printed;
- ``text``: output, and records of runs that take minutes (``docs/results.md``): not run.

A block without a language is an error: say what it is.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from script_runner import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
LANGUAGES = {"python", "sh", "console", "text"}
SETUP = re.compile(r"^(python3 -m venv \S+|\. \S+/bin/activate|pip install .*)$")


def blocks(path: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(path.read_text(encoding="utf-8")) if lang == language]


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _commands(code: str) -> list[str]:
    """The commands of a ``sh`` block: continuation lines joined, ``&&`` chains split."""
    joined = code.replace("\\\n", " ")
    return [c.strip() for line in joined.splitlines() for c in line.split("&&") if c.strip()]


@pytest.fixture
def workdir(tmp_path):
    """A directory to run snippets in: this checkout's scripts and docs beside them, an empty runs/."""
    for name in ("scripts", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "runs").mkdir()
    return tmp_path


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PATH": bindir + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.parametrize("path", DOCS, ids=_ids)
def test_every_block_says_what_it_is(path):
    found = [lang for lang, _ in FENCE.findall(path.read_text(encoding="utf-8"))]
    unknown = [lang or "(none)" for lang in found if lang not in LANGUAGES]
    assert not unknown, f"{path.name}: blocks of language {unknown}; use one of {sorted(LANGUAGES)}"


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "python")], ids=_ids)
def test_python_blocks_run(path, workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__docs__"}
    exec(compile("\n".join(blocks(path, "python")), str(path), "exec"), namespace)
    if path.name == "README.md":  # the tour's results, as the README shows them
        out = capsys.readouterr().out
        assert "total                           39,760" in out and "OK: threshold 1e-06" in out
        assert namespace["result"] and namespace["loss"] > 0
        assert "220 2.2 110 200" in out


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "sh")], ids=_ids)
def test_sh_blocks_run(path, workdir):
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for code in blocks(path, "sh"):
        for command in _commands(code):
            if command.startswith("python -m pytest"):  # this suite: .ci/run runs all of it
                assert re.search(r"^python -m pytest", ci, re.M), f"{path.name}: .ci/run must run the tests"
                continue
            if SETUP.match(command):  # .ci/run sets up the environment exactly so, before this suite
                missing = f"{path.name}: .ci/run must run {command}"
                assert re.search(rf"^{re.escape(command)}$", ci, re.M), missing
                continue
            proc = _run(command, workdir)
            assert proc.returncode == 0, f"{path.name}: `{command}` failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p, "console")], ids=_ids)
def test_console_blocks_print_what_they_show(path, workdir):
    for code in blocks(path, "console"):
        command, shown = None, []
        for line in [*code.splitlines(), "$ "]:
            if line.startswith("$ "):
                if command:
                    proc = _run(command, workdir)
                    printed = (proc.stdout + proc.stderr).splitlines()
                    for want in shown:
                        assert want in printed, f"{path.name}: `{command}` did not print\n{want}\nbut\n" + \
                            "\n".join(printed[-5:])
                command, shown = line[2:].strip(), []
            elif re.match(r"^[\w.-]+: ", line):
                shown.append(line)
