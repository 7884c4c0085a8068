"""Running a study: which runs to execute (:func:`select_runs`) and handing them to the
study's executor (:func:`run_study`), pass after pass while a search's tuned runs wait for it."""

from __future__ import annotations

import os
from collections.abc import Sequence

from oodml.errors import BadInputError
from oodml.executors import executor_class
from oodml.runs import AdaptFn, RunFn, RunSpec, load_run_fn, states
from oodml.study.load import Study, load_study, preflight

__all__ = ["run_study", "select_runs"]


def select_runs(
    study: Study, *, retry_failed: bool = False, only: Sequence[str] | None = None, max_runs: int | None = None
) -> list[RunSpec]:
    """The runs to execute, in execution order (seed, dataset, split, loss): pending ones, plus
    failed ones with ``retry_failed``; ``only`` restricts to (and orders by) the given run ids."""
    st = states(study)
    wanted = {"pending"} | ({"failed"} if retry_failed else set())
    if only is not None:
        runs = [study.get(rid) for rid in only]
    else:
        runs = sorted(study.runs, key=lambda r: (r.order[3], r.order[0], r.order[1], r.order[2]))
    chosen = [r for r in runs if st[r.run_id] in wanted]
    if max_runs is not None:
        chosen = chosen[: max(0, int(max_runs))]
    return chosen


def run_study(
    study: Study | str | os.PathLike,
    *,
    executor: str | None = None,
    retry_failed: bool = False,
    max_runs: int | None = None,
    only: Sequence[str] | None = None,
    stale_after: float | None = None,
    run_fn: RunFn | None = None,
    run_fn_spec: str | None = None,
    adapt_fn: AdaptFn | None = None,
    progress: bool = True,
    wait: bool = True,
    check_data: bool = True,
    jobs: int | None = None,
) -> dict[str, int]:
    """Execute the study's pending runs with its executor (or ``executor``); returns outcome counts.

    ``jobs`` overrides ``executor.jobs``: the number of runs the local executor trains at once on
    the CPU (worker processes that share the claims; see :func:`oodml.executors.run_local`).

    ``run_fn(config, run_dir)`` replaces :func:`oodml.train.train` (a hook for tests and for
    other trainers; ``run_fn_spec`` is its ``module:function`` name, needed by the executors that
    start other processes); ``adapt_fn(run_dir, stage)`` replaces the adaptation call.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    if stale_after is not None:
        study.executor["stale_after"] = float(stale_after)
    if jobs is not None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise BadInputError(f"--jobs must be a positive integer, got {jobs!r}")
        study.executor["jobs"] = jobs
    if run_fn is None and run_fn_spec:
        run_fn = load_run_fn(run_fn_spec)
    kind = executor or study.executor.get("kind", "local")
    runner = executor_class(kind)(study)
    if check_data and run_fn is None:
        preflight(study)
    runs = select_runs(study, retry_failed=retry_failed, only=only, max_runs=max_runs)
    study.runs_dir.mkdir(parents=True, exist_ok=True)
    opts = dict(
        retry_failed=retry_failed,
        run_fn=run_fn,
        run_fn_spec=run_fn_spec,
        adapt_fn=adapt_fn,
        progress=progress,
        wait=wait,
    )
    counts = runner.run(runs, **opts)
    # Tuned runs wait for their search; once its trials have finished, run them in another pass
    # (an executor that returns before its jobs finish, e.g. Slurm without --wait: run again later).
    while study.search is not None and (wait or kind != "slurm") and only is None and max_runs is None:
        more = select_runs(study, retry_failed=False)
        if not more:
            break
        again = runner.run(more, **opts)
        for k, v in again.items():
            counts[k] = counts.get(k, 0) + v
        if not again.get("done"):
            break
    return counts
