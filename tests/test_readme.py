"""Every ``python -m oodml...`` command in README.md is true.

Each command line of the README (in fenced code blocks, and in inline code spans of the prose) is
checked against its module's own argparse parser: the module exists, has a ``main(argv)`` and a
``build_parser()`` (or ``_build_parser()``), and the flags parse. Nothing runs for that. The cheap,
offline, read-only ones listed in :data:`RUN` also run. The README is read as it is, so commands
added to it later are checked without touching this file.

README conventions the extraction understands:

* ``# comment`` after a command, and ``\\`` line continuations in code blocks;
* placeholders in angle brackets (``runs/x/<run id>``) stand for one argument;
* optional parts in square brackets (``[--json]``) are checked as if given;
* ``...`` stands for arguments left out;
* an inline span that is only ``python -m oodml.X`` names the command (prose, not an invocation):
  its module must exist, its arguments are not checked.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_PREFIX = re.compile(r"(?:^|\s|\$ )python3? -m (oodml(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?=\s|$)")


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line of README.md
    text: str  # the command as written
    module: str  # e.g. "oodml.study"
    argv: tuple[str, ...]  # the arguments, placeholders filled
    mention: bool  # an inline `python -m oodml.X` with nothing after it: a name, not a call

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text}"


def _argv(rest: str) -> list[str]:
    rest = re.sub(r"<[^<>]+>", "PLACEHOLDER", rest)  # <run id> is one argument
    rest = re.sub(r"\[(\s*-[^\[\]]*)\]", r"\1", rest)  # [--json] is checked as given
    return [a for a in shlex.split(rest, comments=True) if a != "..."]


def readme_commands(text: str) -> list[Command]:
    """All ``python -m oodml...`` commands of a README text, in order."""
    found: list[Command] = []
    lines = text.splitlines()
    in_code = False
    i = 0
    while i < len(lines):
        line, lineno = lines[i], i + 1
        i += 1
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            while line.endswith("\\") and i < len(lines):  # continuation lines
                line = line[:-1] + " " + lines[i]
                i += 1
            m = _PREFIX.search(line)
            if m and not line[: m.start()].strip().startswith("#"):
                rest = line[m.end() :]
                found.append(Command(lineno, line.strip(), m.group(1), tuple(_argv(rest)), False))
            continue
        for span in re.findall(r"`([^`]+)`", line):
            m = _PREFIX.match(span.strip())
            if m:
                rest = span.strip()[m.end() :]
                found.append(Command(lineno, span.strip(), m.group(1), tuple(_argv(rest)), not rest.strip()))
    return found


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def _entry_module(module: str):
    """The module ``python -m module`` runs (a package runs its ``__main__``)."""
    mod = importlib.import_module(module)
    if hasattr(mod, "__path__"):
        mod = importlib.import_module(module + ".__main__")
    return mod


def _parser(module: str) -> argparse.ArgumentParser:
    mod = _entry_module(module)
    for name in ("build_parser", "_build_parser"):
        factory = getattr(mod, name, None)
        if callable(factory):
            return factory()
    pytest.fail(f"{module} has no build_parser(); add one so that README commands can be checked")


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """Parse ``argv``; return argparse's complaint ('' when it parses)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip() or f"exit {exc.code}"
    return ""


def test_the_readme_has_commands_to_check():
    # the extraction works: the README's well-known commands are all found
    texts = [c.text for c in COMMANDS]
    modules = {c.module for c in COMMANDS}
    assert {
        "oodml.make_splits",
        "oodml.train",
        "oodml.evaluate",
        "oodml.study",
        "oodml.adapt",
        "oodml.plot",
        "oodml.datasets",
        "oodml.demo",
    } <= modules
    assert any(t.startswith("python -m oodml.train --list-losses") for t in texts)
    adapt = next(c for c in COMMANDS if c.module == "oodml.adapt" and not c.mention)
    assert adapt.argv[0] == "runs/embedded_quick/PLACEHOLDER"


def test_extraction_rules():
    text = (
        "Run `python -m oodml.plot` later; inspect: `python -m oodml.datasets --dataset cub [--json]`.\n"
        "```bash\n"
        "python -m oodml.study run s.yaml --jobs 2   # two at once\n"
        "# python -m oodml.commented --out\n"
        "python -m oodml.adapt runs/x/<run id> --mode probe \\\n"
        "    --shots 2 5\n"
        "python -m oodml.train ... --no-resume\n"
        "make test\n"
        "```\n"
        "`python -m benchmarks.bench_fid` is not ours.\n"
    )
    got = [(c.line, c.module, c.argv, c.mention) for c in readme_commands(text)]
    assert got == [
        (1, "oodml.plot", (), True),
        (1, "oodml.datasets", ("--dataset", "cub", "--json"), False),
        (3, "oodml.study", ("run", "s.yaml", "--jobs", "2"), False),
        (5, "oodml.adapt", ("runs/x/PLACEHOLDER", "--mode", "probe", "--shots", "2", "5"), False),
        (7, "oodml.train", ("--no-resume",), False),
    ]


def test_a_wrong_flag_is_caught():
    # what the check exists for: the README's old `--resume` no longer parses
    assert "unrecognized arguments: --resume" in _parse(_parser("oodml.train"), ["--resume"])
    assert _parse(_parser("oodml.train"), ["--no-resume"]) == ""


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"L{c.line}-{c.module.removeprefix('oodml.')}")
def test_readme_command_parses(cmd: Command):
    mod = _entry_module(cmd.module)
    assert callable(getattr(mod, "main", None)), f"{cmd}: {cmd.module} has no main(argv)"
    parser = _parser(cmd.module)
    if cmd.mention:
        return
    problem = _parse(parser, list(cmd.argv))
    assert not problem, f"{cmd}\n  does not parse: {problem}"


# --------------------------------------------------------------------------------------------
# the cheap ones also run
# --------------------------------------------------------------------------------------------
#: README commands cheap enough to run here (seconds, offline, writing nothing into the tree):
#: module -> predicate on the arguments, and the text the output must contain
RUN: dict[str, tuple[Callable[[tuple[str, ...]], bool], str]] = {
    "oodml.train": (lambda a: a == ("--list-losses",), "multisimilarity"),
    "oodml.study": (
        lambda a: a[:1] in (("plan",), ("status",)) and a[1:2] == ("studies/embedded_quick.yaml",),
        "embedded_quick",
    ),
}
CHEAP = sorted({(c.module, c.argv) for c in COMMANDS if c.module in RUN and RUN[c.module][0](c.argv)})


def test_some_readme_commands_are_cheap_enough_to_run():
    assert ("oodml.train", ("--list-losses",)) in CHEAP
    assert ("oodml.study", ("plan", "studies/embedded_quick.yaml")) in CHEAP


@pytest.mark.parametrize("module,argv", CHEAP, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_cheap_readme_command_runs(module, argv, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)  # README paths are relative to the repository
    monkeypatch.setenv("OODML_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OODML_QUIET", "1")
    before = sorted(p.name for p in ROOT.iterdir())
    code = _entry_module(module).main(list(argv))
    out = capsys.readouterr().out
    assert code in (0, None), out
    assert RUN[module][1] in out
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing written into the tree


@pytest.mark.parametrize("module", sorted({c.module for c in COMMANDS}))
def test_readme_module_help_runs(module, capsys):
    with pytest.raises(SystemExit) as exc:
        _entry_module(module).main(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out
