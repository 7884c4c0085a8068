"""The package's shape: no import cycle, every module importable on its own, size limits kept.

The import graph is read from the source (every ``import`` and ``from ... import`` of an ``oodml``
module, at module top or inside a function), so a cycle hidden behind a lazy import is found too.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import oodml

PACKAGE_DIR = Path(oodml.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {"oodml": PACKAGE_DIR / "__init__.py"}
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="oodml."):
        base = PACKAGE_DIR.joinpath(*info.name.split(".")[1:])
        out[info.name] = base / "__init__.py" if info.ispkg else base.with_suffix(".py")
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``oodml`` modules that module ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {  # `if TYPE_CHECKING:` imports are read by type checkers, never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import oodml.x.y` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    modules = _modules()
    graph = {name: _imports(name, path, modules) & set(modules) for name, path in modules.items()}
    assert len(modules) > 40, sorted(modules)
    assert _cycles(graph) == []


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(_modules())
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


#: Modules allowed past ~600 lines, each one cohesive thing that says so at its top.
LONG_MODULES = {
    "oodml.runs": "one run's folder: spec, claims, state and execution share the same files",
    "oodml.search": "the search block, its identity, Optuna trials and chosen settings share one record",
}
LONG_MODULE_LIMIT = 600


def test_long_modules_are_the_explained_few():
    long = {}
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG_MODULE_LIMIT:
            long[name] = ast.get_docstring(ast.parse(text)) or ""
    assert sorted(long) == sorted(n for n in LONG_MODULES if n in long), sorted(long)
    for name, doc in long.items():
        assert len(doc.splitlines()) >= 5, f"{name} is long: its docstring must say why it is one piece"


def test_every_command_follows_the_cli_pattern():
    import importlib

    from oodml.__main__ import COMMANDS, build_parser

    listed = build_parser().format_help()
    for command, (module_name, _) in COMMANDS.items():
        assert command in listed
        module = importlib.import_module(module_name)
        assert callable(module.main), module_name
        parser = getattr(module, "build_parser", None) or module._build_parser
        options = {s for action in parser()._actions for s in action.option_strings}
        assert "--version" in options, f"{module_name} has no --version"
        with pytest.raises(SystemExit) as exc:
            module.main(["--version"])
        assert exc.value.code == 0


#: Functions are cut into named steps past this many lines (docstring included).
LONG_FUNCTION_LIMIT = 80


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONG_FUNCTION_LIMIT:
                    long.append(f"{name}.{node.name} ({lines} lines)")
    assert long == []
