"""The layout of the oodml.splits package: no import cycle among its modules, the former module
paths (oodml.controls, oodml.published_splits, oodml.splits_figure, oodml.make_splits) still
give the same objects, and reading split files imports neither torch nor matplotlib nor scipy."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import oodml.splits

PACKAGE = Path(oodml.splits.__file__).parent
ROOT = PACKAGE.parents[1]


def _module_imports(path: Path) -> set[str]:
    """oodml.splits modules imported at the top level of ``path`` (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("oodml.splits."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("oodml.splits."))
    return found


def test_no_import_cycle_inside_the_package():
    graph = {p.stem: _module_imports(p) for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            assert state.get(n) != 1, f"import cycle: {' -> '.join(path + [m, n])}"
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_former_module_paths_give_the_same_objects():
    from oodml import controls, make_splits, published_splits, splits_figure
    from oodml.splits import cli, figure, published
    from oodml.splits import controls as c2

    assert controls.control_cells is c2.control_cells and controls.CONTROL_PHASE == "control"
    assert published_splits.import_published is published.import_published
    assert published_splits.EpisodeMappingError is published.EpisodeMappingError
    assert splits_figure.plot_split_series is figure.plot_split_series
    assert make_splits.build_parser is cli.build_parser and make_splits.cli is make_splits.main
    for name in ("load_splits", "validation_classes", "make_episodes", "_table_from_featureset", "SearchParams"):
        assert hasattr(oodml.splits, name), name


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_reading_split_files_imports_no_heavy_library():
    res = _fresh(
        "import sys\n"
        "from oodml.splits import load_splits\n"
        "import oodml.make_splits, oodml.controls, oodml.published_splits, oodml.splits_figure\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'matplotlib', 'scipy', 'pandas'}))\n"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_version_flag_and_package_entry_point():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for module in ("oodml.make_splits", "oodml.splits"):
        res = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=env, timeout=300
        )
        assert res.returncode == 0 and "oodml" in res.stdout, res.stdout + res.stderr
