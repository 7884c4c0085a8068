"""The package as a user gets it: licence, citation, extras, the ``oodml`` command, and a release
check that builds the sdist and the wheel and runs the wheel in a fresh virtual environment
outside the source tree."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import oodml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CFF_SCHEMA = Path(__file__).parent / "data" / "cff-1.2.0.schema.json"


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"README.md has no '## {title}' section"
    return m.group(1)


# --------------------------------------------------------------------------------------------
# licence and citation
# --------------------------------------------------------------------------------------------
def test_licence_file_is_the_mit_licence_pyproject_declares():
    assert _pyproject()["project"]["license"] == "MIT"  # an SPDX expression (PEP 639)
    assert _pyproject()["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def _cff_errors(doc: dict) -> list[str]:
    import jsonschema

    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_citation_cff_is_valid_cff_1_2_0():
    doc = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert _cff_errors(doc) == []
    # the validator has teeth: the mistakes people make in CFF files are caught
    for breaks in (
        lambda d: d.pop("cff-version"),
        lambda d: d.update(authors=[]),
        lambda d: d.update(license="MIT-ish"),
        lambda d: d["references"][0].update(type="paper"),
        lambda d: d.update(**{"date-released": "25 Nov 2026"}),
    ):
        bad = copy.deepcopy(doc)
        breaks(bad)
        assert _cff_errors(bad), breaks


def test_citation_agrees_with_package_and_readme():
    doc = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert doc["version"] == oodml.__version__
    assert doc["license"] == _pyproject()["project"]["license"]
    assert doc["repository-code"] == _pyproject()["project"]["urls"]["Homepage"]
    paper = doc["references"][0]
    assert [a["family-names"] for a in paper["authors"]][:2] == ["Milbich", "Roth"] and paper["year"] == 2021
    bib = _readme_section("Citing")
    assert "```bibtex" in bib
    assert f"version = {{{oodml.__version__}}}" in bib
    assert f"title     = {{{paper['title']}}}" in bib
    assert f"title   = {{{doc['title']}}}" in bib
    assert bib.count("@software{") == 1 and bib.count("@inproceedings{") == 1


# --------------------------------------------------------------------------------------------
# dependencies and extras: pyproject and the README's table say the same
# --------------------------------------------------------------------------------------------
def _req_key(text: str) -> str:
    """``name<specifier>`` of a requirement, normalised (markers dropped, specifiers sorted)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    req = Requirement(text)
    spec = ",".join(sorted(str(s) for s in req.specifier))
    return canonicalize_name(req.name) + spec


def _readme_dependency_table() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for line in _readme_section("Installing").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2:
            continue
        m = re.fullmatch(r"`\[([a-z0-9-]+)\]`|\(none\)", cells[0])
        if not m:
            continue
        table[m.group(1) or ""] = {_req_key(t) for t in re.findall(r"`([^`]+)`", cells[1])}
    return table


def test_readme_dependency_table_matches_pyproject():
    project = _pyproject()["project"]
    declared = {"": {_req_key(r) for r in project["dependencies"]}}
    declared.update({k: {_req_key(r) for r in v} for k, v in project["optional-dependencies"].items()})
    table = _readme_dependency_table()
    assert set(table) == set(declared), "README's table and pyproject.toml name different extras"
    for extra, reqs in declared.items():
        assert table[extra] == reqs, f"extra [{extra}]: README {sorted(table[extra])} != pyproject {sorted(reqs)}"


def test_make_installs_the_extras_the_readme_says():
    make = re.findall(r'pip install [^\n]*-e "\.\[([a-z0-9,-]+)\]"', (ROOT / "Makefile").read_text())
    readme = re.findall(
        r'pip install -e "\.\[([a-z0-9,-]+)\]" +# a development checkout: what `make` installs',
        _readme_section("Installing"),
    )
    assert len(make) == 1 and readme == make, (make, readme)
    extras = set(make[0].split(","))
    assert extras <= set(_pyproject()["project"]["optional-dependencies"])
    # the suite compares against pytorch-metric-learning's AccuracyCalculator, which runs faiss
    assert "test" in extras and "cpu" in extras


def test_the_readme_test_command_lints():
    # `make test` (the README's test command, which .ci/run calls) runs ruff before the suite
    make = (ROOT / "Makefile").read_text()
    target = re.search(r"^test: .*\n((?:\t.*\n)+)", make, flags=re.M)
    assert target, "the Makefile has no test target"
    recipe = [line.strip() for line in target.group(1).splitlines()]
    assert recipe == ["$(PY) -m ruff check .", "$(PY) -m ruff format --check .", "$(PY) -m pytest -q"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    ruff = _pyproject()["tool"]["ruff"]
    assert ruff["line-length"] == 120 and set(ruff["lint"]["select"]) == {"E", "F", "W", "I", "UP", "B"}


def test_gpu_extra_replaces_the_cpu_build_where_a_gpu_wheel_exists():
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    assert not any(Requirement(r).name.startswith("faiss") for r in project["dependencies"])
    linux = {"sys_platform": "linux", "platform_machine": "x86_64"}
    for env, wanted in (
        (linux, {"faiss-gpu"}),
        ({"sys_platform": "linux", "platform_machine": "aarch64"}, {"faiss-cpu"}),
        ({"sys_platform": "darwin", "platform_machine": "arm64"}, {"faiss-cpu"}),
        ({"sys_platform": "win32", "platform_machine": "AMD64"}, {"faiss-cpu"}),
    ):
        reqs = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
        got = {req.name for req in reqs if req.marker is None or req.marker.evaluate(env)}
        assert got == wanted, env
    assert [Requirement(r).name for r in project["optional-dependencies"]["cpu"]] == ["faiss-cpu"]


# --------------------------------------------------------------------------------------------
# the `oodml` command
# --------------------------------------------------------------------------------------------
def test_oodml_command_version_list_and_dispatch(capsys):
    from oodml.__main__ import COMMANDS, main

    assert _pyproject()["project"]["scripts"]["oodml"] == "oodml.__main__:main"
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"oodml {oodml.__version__}"
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    # every command is a module with a main(argv)
    import importlib

    for module, _ in COMMANDS.values():
        assert callable(importlib.import_module(module).main), module
    # a command's own options belong to the command; its user errors are one line, status 2
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0 and "python -m oodml.evaluate" in capsys.readouterr().out
    assert main(["evaluate", "no/such/file.npz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "file.npz" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_python_m_oodml_prints_the_version():
    out = subprocess.run(
        [sys.executable, "-m", "oodml", "--version"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == f"oodml {oodml.__version__}"


# --------------------------------------------------------------------------------------------
# release check: sdist + wheel, installed into a fresh venv outside the tree
# --------------------------------------------------------------------------------------------
_COPY_IGNORE = (
    ".git",
    ".venv",
    "venv",
    "runs",
    "build",
    "dist",
    ".cache",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything that would let the source tree leak into the fresh venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "OODML_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", OODML_QUIET="1", **extra)
    return env


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_release_wheel_installs_and_runs_outside_the_tree(tmp_path):
    import shutil

    pytest.importorskip("build", reason="the release check needs `build` (the [test] extra)")
    pytest.importorskip("setuptools", reason="the release check builds with this environment's setuptools ([test])")
    # 1. build from a copy, so the source tree gets no build/ or *.egg-info; sdist first, the wheel from it
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=lambda d, names: [n for n in names if n in _COPY_IGNORE or n.endswith(".egg-info")]
    )
    dist = tmp_path / "dist"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _clean_env()
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], cwd=outside, env=env)
    version = oodml.__version__
    sdist, wheel = dist / f"oodml-{version}.tar.gz", dist / f"oodml-{version}-py3-none-any.whl"
    assert sdist.is_file() and wheel.is_file(), sorted(p.name for p in dist.iterdir())

    # 2. the wheel holds the whole package and nothing of tests/, figures/, benchmarks/
    names = zipfile.ZipFile(wheel).namelist()
    package = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "oodml").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    assert set(package) <= set(names), f"missing from the wheel: {sorted(set(package) - set(names))}"
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"oodml", f"oodml-{version}.dist-info"}, tops
    dist_info = {n.split("/", 1)[1] for n in names if n.startswith(f"oodml-{version}.dist-info/")}
    assert any(n.endswith("LICENSE") for n in dist_info), dist_info
    entry_points = zipfile.ZipFile(wheel).read(f"oodml-{version}.dist-info/entry_points.txt").decode()
    assert "oodml = oodml.__main__:main" in entry_points
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml", "oodml/__init__.py"} <= members

    # 3. a fresh venv outside the tree; the wheel installed offline without its dependencies, which
    #    come from this environment's site-packages (added by a .pth *after* the install, so pip sees
    #    an empty environment); nothing is downloaded
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=outside, env=env)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    pip = [sys.executable, "-m", "pip", "--python", py]
    _run(pip + ["install", "--no-deps", "--no-index", "--no-compile", wheel], cwd=outside, env=env)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], outside, env).strip())
    parent = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_oodml_release_check_deps.pth").write_text("".join(f"{p}\n" for p in parent))

    # 4. the wheel's declared requirements are all satisfied there
    report = subprocess.run(
        [str(c) for c in pip + ["check"]], cwd=outside, env=env, capture_output=True, text=True, timeout=300
    )
    # (pip check also reports other packages of this environment; only oodml's requirements are ours)
    assert report.returncode == 0 or (report.returncode == 1 and report.stdout.strip()), report.stderr
    assert not [line for line in report.stdout.splitlines() if line.lower().startswith("oodml ")], report.stdout
    check = (
        "import importlib.metadata as md\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for r in map(Requirement, md.requires('oodml') or []):\n"
        "    if r.marker is not None and not r.marker.evaluate({'extra': ''}):\n"
        "        continue\n"
        "    try:\n"
        "        v = md.version(r.name)\n"
        "    except md.PackageNotFoundError:\n"
        "        bad.append(f'{r} (not installed)'); continue\n"
        "    if not r.specifier.contains(v, prereleases=True):\n"
        "        bad.append(f'{r} (have {v})')\n"
        "print(';'.join(bad) or 'ok')\n"
    )
    assert _run([py, "-c", check], outside, env).strip() == "ok"

    # 5. the three commands, from a folder outside the tree, importing the installed wheel
    run_env = _clean_env(OODML_CACHE=str(tmp_path / "cache"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    where = _run([py, "-c", "import oodml; print(oodml.__file__)"], outside, run_env).strip()
    assert Path(where).is_relative_to(venv), where
    oodml_cmd = bindir / ("oodml.exe" if os.name == "nt" else "oodml")
    assert _run([oodml_cmd, "--version"], outside, run_env).strip() == f"oodml {version}"
    info = json.loads(_run([py, "-m", "oodml.datasets", "--json"], outside, run_env))
    assert info["dataset"] == "glyphs" and info["classes"] == 360 and info["images"] == 5760
    out = outside / "splits" / "glyphs.json"
    _run([py, "-m", "oodml.make_splits", "--num-splits", "1", "--out", out, "--figure", "none"], outside, run_env)
    doc = json.loads(out.read_text())
    assert doc["schema"] == "oodml.splits/1" and len(doc["series"]) == 1 and doc["series"][0]["standard"]
