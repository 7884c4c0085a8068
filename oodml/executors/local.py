"""The ``local`` executor: runs one after the other in this process (``jobs: 1``, the default),
or ``jobs`` CPU worker processes on this machine (:mod:`oodml.executors.workers`). Each run's
stdout/stderr go to ``<run>/log.txt``; one overall progress bar (runs done / total, ETA)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from oodml.config import Config
from oodml.errors import OodmlError
from oodml.executors.base import Executor, positive_int
from oodml.executors.workers import run_workers
from oodml.runs import close_bar, execute_run, load_run_fn, make_bar

__all__ = ["LocalExecutor", "LocalOptions", "run_local"]


@dataclasses.dataclass
class LocalOptions(Config):
    #: runs trained at once on the CPU (worker processes sharing the claims)
    jobs: int = dataclasses.field(default=1, metadata={"coerce": positive_int})


class LocalExecutor(Executor):
    """Sequential in this process, or ``jobs`` CPU worker processes."""

    kind: ClassVar[str] = "local"
    description: ClassVar[str] = "this machine: one run after the other, or `jobs` CPU worker processes"
    Options = LocalOptions

    def capacity(self) -> int:
        return int(self.study.executor.get("jobs", 1))

    def run(
        self,
        runs,
        *,
        retry_failed=False,
        run_fn=None,
        run_fn_spec=None,
        adapt_fn=None,
        progress=True,
        wait=True,  # noqa: ARG002 - a local run always waits
        claim_extra=None,
    ) -> dict[str, int]:
        """Execute ``runs`` one after the other in this process; returns outcome counts
        (``done``, ``failed``, ``skipped``: done or claimed by another runner meanwhile)."""
        study = self.study
        jobs = int(study.executor.get("jobs", 1))
        if jobs > 1 and len(runs) > 1:
            if adapt_fn is not None or (run_fn is not None and not run_fn_spec):
                raise OodmlError(
                    "executor.jobs > 1 runs in worker processes: pass the run function as "
                    "run_fn_spec='module:function' and no adapt_fn, or use jobs: 1"
                )
            slots = [("cpu", k) for k in range(min(jobs, len(runs)))]
            return run_workers(
                study, runs, slots, retry_failed=retry_failed, run_fn_spec=run_fn_spec, progress=progress
            )
        if run_fn is None and run_fn_spec:
            run_fn = load_run_fn(run_fn_spec)
        counts = {"done": 0, "failed": 0, "skipped": 0}
        bar = make_bar(study, progress)
        try:
            for run in runs:
                bar.set_postfix_str(
                    f"{run.dataset} split {run.split if run.split is not None else 'std'} {run.loss} seed {run.seed}"
                )
                outcome = execute_run(
                    run,
                    study.name,
                    run_fn=run_fn,
                    adapt_fn=adapt_fn,
                    retry_failed=retry_failed,
                    stale_after=study.stale_after,
                    heartbeat=study.heartbeat,
                    claim_extra=claim_extra,
                )
                counts[outcome] += 1
                if outcome == "done":
                    bar.update(1)
                elif outcome == "failed":
                    bar.write(f"run {run.run_id} failed: see {run.run_dir / 'failed.json'}")
        finally:
            close_bar(bar)
        return counts


def run_local(study, runs, **kwargs) -> dict[str, int]:
    """:meth:`LocalExecutor.run` of ``study`` (the function form of earlier releases)."""
    return LocalExecutor(study).run(runs, **kwargs)
