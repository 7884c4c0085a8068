"""oodml.executors.registry and .base: one registration per executor, options checked by the
executor that owns them, and a one-way import graph (run folder <- executors <- study)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from oodml import executors, runs
from oodml.errors import BadInputError
from oodml.executors.base import Executor

PACKAGE = Path(executors.__file__).resolve().parents[1]


def test_every_executor_is_registered_once_with_its_options():
    assert executors.EXECUTOR_KINDS == ("local", "gpus", "slurm")
    for kind, cls in executors.EXECUTORS.items():
        assert issubclass(cls, Executor) and cls.kind == kind and cls.description
        assert runs.JOB_TESTS[kind] is cls  # queued.json markers are judged by their executor
    # the valid keys of an executor block follow from the classes' options
    assert executors.EXECUTOR_KEYS == ("kind", "jobs", "gpus", "runs_per_gpu", "slurm", "stale_after", "heartbeat")


@pytest.mark.parametrize(
    "block, needle",
    [
        ({"kind": "local", "jobs": 0}, "executor.jobs must be a positive integer, got 0"),
        ({"kind": "gpus", "runs_per_gpu": "2"}, "executor.runs_per_gpu must be a positive integer"),
        ({"heartbeat": -1}, "executor.heartbeat must be a positive number of seconds"),
        ({"gpu": 2}, "did you mean 'gpus'"),
        ({"kind": "slurn"}, "did you mean 'slurm'"),
        ({"kind": "slurm", "slurm": {"time": "soon"}}, "is not minutes or [D-]HH:MM:SS"),
        ("local", None),
    ],
)
def test_executor_block_checked_by_its_owner(block, needle):
    if needle is None:
        assert executors.check_executor(block, Path("s.yaml")) == {"kind": "local"}
        return
    with pytest.raises(BadInputError) as info:
        executors.check_executor(block, Path("s.yaml"))
    assert needle in str(info.value) and str(info.value).startswith("s.yaml: ")


def test_capacity_is_the_executors_own():
    class FakeStudy:
        path = Path("s.yaml")
        runs_dir = Path("runs")

        def __init__(self, executor):
            self.executor = executor

    assert executors.parallel_capacity(FakeStudy({"kind": "local", "jobs": 3})) == 3
    assert executors.parallel_capacity(FakeStudy({"kind": "gpus", "gpus": ["0", "1"], "runs_per_gpu": 2})) == 4
    assert executors.parallel_capacity(FakeStudy({"kind": "slurm", "slurm": {"array_parallelism": 5}})) == 5
    assert executors.parallel_capacity(FakeStudy({"kind": "slurm"})) == 10**6


def _module_imports(path: Path) -> set[str]:
    """oodml modules imported at a module's top level (not inside functions)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("oodml"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("oodml"))
    return out


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_import_cycle_among_runs_executors_study_search():
    files = [PACKAGE / "runs.py", PACKAGE / "search.py", PACKAGE / "estimate.py"]
    files += sorted((PACKAGE / "executors").glob("*.py")) + sorted((PACKAGE / "study").glob("*.py"))
    names = {_name(p): p for p in files}
    # edges: top-level imports, except a package's __init__ re-exporting its own submodules
    graph = {
        n: {m for m in _module_imports(p) if m in names and m != n and not m.startswith(n + ".")}
        for n, p in names.items()
    }

    def visit(n, stack):
        assert n not in stack, " -> ".join([*stack, n])
        for m in graph[n]:
            visit(m, [*stack, n])

    for n in graph:
        visit(n, [])
    assert not any(m.startswith("oodml.study") for m in graph["oodml.runs"] | graph["oodml.executors.slurm"])


def test_run_folder_and_executors_do_not_import_the_study():
    code = (
        "import sys, oodml.runs, oodml.executors, oodml.search; "
        "print(sorted(m for m in sys.modules if m.startswith('oodml.study')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
