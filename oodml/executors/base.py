"""The executor interface: *where* a study's runs happen, behind one :meth:`Executor.run`.

An executor is a class that owns

- its **options** (:attr:`Executor.Options`, an :class:`oodml.config.Config` dataclass of its keys
  in the study file's ``executor:`` block, validated when the study is loaded),
- **running** a list of runs (:meth:`Executor.run`, which hands every run to
  :func:`oodml.runs.execute_run` in this or another process, so all executors share the same
  exactly-once and crash-safety guarantees),
- its **capacity** (:meth:`Executor.capacity`: how many runs it runs at once, for the ETA),
- and, when it leaves ``queued.json`` markers, the **liveness test** of its jobs
  (:meth:`Executor.job_alive`, :meth:`Executor.record_ended_job`).

A new executor is one class in its own module, listed once in :mod:`oodml.executors.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from oodml.config import Config
from oodml.errors import BadInputError
from oodml.runs import DEFAULT_HEARTBEAT, DEFAULT_STALE_AFTER, RunSpec, run_state

__all__ = ["POLL_SECONDS", "CommonOptions", "Executor", "counts", "positive_int", "positive_seconds"]

#: Seconds between two looks at the run folders while an executor waits for its workers or jobs.
POLL_SECONDS = 2.0


def positive_int(value: Any, key: str, source: str) -> int:
    """A ``coerce`` for an executor option that must be a positive integer (YAML int, not text)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInputError(f"{source}: executor.{key} must be a positive integer, got {value!r}")
    return value


def positive_seconds(value: Any, key: str, source: str) -> float:
    """A ``coerce`` for an executor option that is a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadInputError(f"{source}: executor.{key} must be a positive number of seconds")
    return value


@dataclasses.dataclass
class CommonOptions(Config):
    """``executor:`` keys every executor understands (besides ``kind``)."""

    #: seconds without heartbeat before another host's claim is stale
    stale_after: float = dataclasses.field(default=DEFAULT_STALE_AFTER, metadata={"coerce": positive_seconds})
    #: seconds between heartbeats of a held claim
    heartbeat: float = dataclasses.field(default=DEFAULT_HEARTBEAT, metadata={"coerce": positive_seconds})


@dataclasses.dataclass
class NoOptions(Config):
    """An executor without options of its own."""


def options_of(cls: type[Config], executor: dict, source: str) -> Config:
    """``cls`` built from the keys of the study's ``executor`` mapping that are its fields."""
    return cls.from_dict({k: executor[k] for k in cls.keys() if k in executor}, source)


def counts(study: Any, runs: Sequence[RunSpec]) -> dict[str, int]:
    """Outcome counts of ``runs`` from their folders: ``done``, ``failed``, ``skipped`` (the rest)."""
    out = {"done": 0, "failed": 0, "skipped": 0}
    for r in runs:
        s = run_state(r, study.stale_after)
        out[s if s in ("done", "failed") else "skipped"] += 1
    return out


class Executor:
    """Base class; see the module docstring. ``Executor(study).run(runs, ...)`` executes ``runs``
    (RunSpecs of ``study``) and returns outcome counts (``done``, ``failed``, ``skipped``, and
    ``submitted`` for executors that submit jobs)."""

    #: the ``executor.kind`` of a study file (and ``run --executor``)
    kind: ClassVar[str] = ""
    #: one line for listings
    description: ClassVar[str] = ""
    #: this executor's own keys of the ``executor:`` block
    Options: ClassVar[type[Config]] = NoOptions

    def __init__(self, study: Any):
        self.study = study
        self.options = options_of(self.Options, study.executor, str(study.path))

    @classmethod
    def check_options(cls, executor: dict, study_path: Path | str) -> None:
        """Validate this executor's keys of a study's ``executor`` mapping (at load time)."""
        options_of(cls.Options, executor, str(study_path))

    def run(
        self,
        runs: Sequence[RunSpec],
        *,
        retry_failed: bool = False,
        run_fn: Any = None,
        run_fn_spec: str | None = None,
        adapt_fn: Any = None,
        progress: bool = True,
        wait: bool = True,
        claim_extra: dict | None = None,
    ) -> dict[str, int]:
        raise NotImplementedError

    def capacity(self) -> int:
        """How many runs this executor runs at once (for the ETA)."""
        return 1

    @classmethod
    def job_alive(cls, marker: dict, mtime: float, stale_after: float) -> bool:  # noqa: ARG003
        """Whether the job named by a ``queued.json`` marker may still run its run."""
        return False

    @classmethod
    def record_ended_job(cls, run_dir: Path, marker: dict) -> bool:  # noqa: ARG003
        """Record a job that ended badly as the run's failure; returns whether it did."""
        return False
