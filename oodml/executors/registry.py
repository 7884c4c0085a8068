"""The executors, registered in one place: ``executor.kind`` of a study file (and ``run
--executor``) -> its class. A new executor is a class in its own module (see
:mod:`oodml.executors.base`) and one entry in :data:`EXECUTORS` below; the rest (the valid
``executor:`` keys, their validation, the ETA's capacity, the job-liveness test of queued runs)
follows from the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oodml.config import check_keys, closest
from oodml.errors import BadInputError
from oodml.executors.base import CommonOptions, Executor
from oodml.executors.gpus import GpusExecutor
from oodml.executors.local import LocalExecutor
from oodml.executors.slurm import SlurmExecutor
from oodml.runs import JOB_TESTS

__all__ = [
    "EXECUTORS",
    "EXECUTOR_KEYS",
    "EXECUTOR_KINDS",
    "check_executor",
    "get_executor",
    "job_alive",
    "make_executor",
    "parallel_capacity",
    "record_ended_job",
]

#: kind -> executor class, in the order listings show them.
EXECUTORS: dict[str, type[Executor]] = {cls.kind: cls for cls in (LocalExecutor, GpusExecutor, SlurmExecutor)}

EXECUTOR_KINDS = tuple(EXECUTORS)
#: Valid keys of a study's ``executor:`` block: ``kind``, every executor's own keys (``run
#: --executor`` may pick another kind than the file's), then the keys all of them share.
EXECUTOR_KEYS = (
    "kind",
    *dict.fromkeys(k for cls in EXECUTORS.values() for k in cls.Options.keys()),
    *CommonOptions.keys(),
)

# queued.json markers name their executor; the run folder asks it whether the job still lives
for _cls in EXECUTORS.values():
    JOB_TESTS[_cls.kind] = _cls


def executor_class(kind: str) -> type[Executor]:
    try:
        return EXECUTORS[kind]
    except KeyError:
        raise BadInputError(f"unknown executor {kind!r}; choose {', '.join(EXECUTORS)}") from None


def make_executor(study: Any, kind: str | None = None, **kwargs: Any) -> Executor:
    """The executor of ``study`` (its ``executor.kind``, or ``kind``)."""
    return executor_class(kind or study.executor.get("kind", "local"))(study, **kwargs)


def get_executor(kind: str):
    """``fn(study, runs, **options)`` running ``runs`` with executor ``kind`` (the function form)."""
    cls = executor_class(kind)

    def run(study: Any, runs: Any, **kwargs: Any) -> dict[str, int]:
        return cls(study).run(runs, **kwargs)

    return run


def check_executor(raw: Any, study_path: Path) -> dict:
    """Validate a study file's ``executor`` block (a kind name or a mapping); returns it as a
    mapping with ``kind`` set. Each executor checks its own keys (:attr:`Executor.Options`)."""
    raw = {} if raw is None else raw
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise BadInputError(f"{study_path}: executor must be a mapping like {{kind: local}}")
    check_keys(raw, EXECUTOR_KEYS, str(study_path), "executor.")
    ex = dict(raw)
    ex.setdefault("kind", "local")
    if ex["kind"] not in EXECUTORS:
        raise BadInputError(
            f"{study_path}: executor.kind: unknown executor {ex['kind']!r}{closest(ex['kind'], EXECUTOR_KINDS)} "
            f"(choose {', '.join(EXECUTOR_KINDS)})"
        )
    for cls in EXECUTORS.values():
        cls.check_options(ex, study_path)
    CommonOptions.from_dict({k: ex[k] for k in CommonOptions.keys() if k in ex}, str(study_path))
    return ex


def parallel_capacity(study: Any) -> int:
    """How many runs the study's executor runs at once (for the ETA)."""
    return make_executor(study).capacity()


def job_alive(marker: dict, mtime: float, stale_after: float) -> bool:
    """Whether the job named by a ``queued.json`` marker may still run its run."""
    return executor_class(marker.get("executor", "slurm")).job_alive(marker, mtime, stale_after)


def record_ended_job(run_dir: Path, marker: dict) -> bool:
    """Record the job of a ``queued.json`` marker that ended badly as its run's failure."""
    return executor_class(marker.get("executor", "slurm")).record_ended_job(run_dir, marker)
