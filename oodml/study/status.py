"""What a study looks like now: the grid with each run's state (:func:`plan_table`), and counts
per state with an ETA (:func:`status_summary`, :func:`format_status`)."""

from __future__ import annotations

import contextlib
import json
import math

from oodml.executors import parallel_capacity
from oodml.runs import METRICS, STATES, TIMING, states
from oodml.study.load import Study
from oodml.study.plan import selection_of

__all__ = ["format_status", "plan_table", "status_summary"]


def _fmt_fid(fid: float | None) -> str:
    return "-" if fid is None else f"{fid:.4g}"


def _fmt_split(split: int | None) -> str:
    return "standard" if split is None else str(split)


def plan_table(study: Study) -> str:
    """The grid as a text table: run id, dataset, split, FID, loss, seed, state."""
    st = states(study)
    header = ("run_id", "dataset", "split", "fid", "loss", "seed", "state")
    rows = [
        (r.run_id, r.dataset, _fmt_split(r.split), _fmt_fid(r.fid), r.loss, str(r.seed), st[r.run_id])
        for r in study.runs
    ]
    if study.search is not None:  # which runs are search trials / tuned runs
        from oodml.search import plan_label  # lazy: torch (loaded already with a search study)

        header += ("tuning",)
        rows = [row + (plan_label(r),) for row, r in zip(rows, study.runs)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    n_split = len({(r.dataset, r.split) for r in study.runs if r.tuning == "default"})
    if study.search is not None:
        from oodml.search import plan_summary  # lazy: torch

        lines.append(plan_summary(study))
    lines.append(
        f"{len(study.runs)} runs = {n_split} dataset splits x {len(study.losses)} losses x {len(study.seeds)} seeds; "
        f"adapt: {', '.join(s['mode'] + ' ' + str(s['shots']) for s in study.adapt) or 'none'}; "
        f"runs in {study.runs_dir}"
    )
    rules = sorted({selection_of(r.config) for r in study.runs})
    protocols = sorted({str(r.config.get("protocol") or "default") for r in study.runs})
    lines.append(
        f"protocol: {', '.join(protocols)}; checkpoint selection: "
        + ", ".join(f"{x} (ORACLE: chosen on the test classes)" if x == "test" else x for x in rules)
    )
    lines.append(_counts_line(st))
    return "\n".join(lines)


def _counts_line(st: dict[str, str]) -> str:
    counts = {s: 0 for s in STATES}
    for v in st.values():
        counts[v] += 1
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s] or s in ("done", "pending"))


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def status_summary(study: Study) -> dict:
    """Counts per state, mean seconds per finished run and an ETA for the rest.

    The ETA assumes the remaining runs (pending, queued, running, waiting; failed excluded) take the mean
    time of the finished ones (wall time of training + adaptation recorded by the runner in
    ``study_timing.json``, else the trainer's ``seconds`` in ``metrics.json``), spread over the
    executor's parallel capacity (1 local, GPUs × runs_per_gpu, the Slurm array parallelism).
    """
    st = states(study)
    counts = {s: 0 for s in STATES}
    for v in st.values():
        counts[v] += 1
    secs = []
    for r in study.runs:
        if st[r.run_id] != "done":
            continue
        for name in (TIMING, METRICS):  # wall time of train + adapt, else the trainer's own time
            with contextlib.suppress(Exception):
                m = json.loads((r.run_dir / name).read_text(encoding="utf-8"))
                if isinstance(m.get("seconds"), (int, float)):
                    secs.append(float(m["seconds"]))
                    break
    mean = sum(secs) / len(secs) if secs else None
    remaining = counts["pending"] + counts["queued"] + counts["running"] + counts["waiting"]
    par = max(1, min(parallel_capacity(study), max(remaining, 1)))
    eta = None if mean is None else mean * math.ceil(remaining / par)
    return {
        "study": study.name,
        "total": len(study.runs),
        "counts": counts,
        "mean_seconds": mean,
        "parallel": par,
        "eta_seconds": eta,
        "runs_dir": str(study.runs_dir),
    }


def format_status(summary: dict) -> str:
    c = summary["counts"]
    shown = [s for s in STATES if s != "done" and (s != "waiting" or c[s])]  # waiting: tuned runs of a search
    lines = [
        f"study {summary['study']}: {c['done']}/{summary['total']} runs done "
        f"({', '.join(f'{c[s]} {s}' for s in shown)}) in {summary['runs_dir']}"
    ]
    if summary["mean_seconds"] is not None:
        eta = summary["eta_seconds"]
        lines.append(
            f"mean {_fmt_duration(summary['mean_seconds'])} per run; "
            f"ETA {_fmt_duration(eta) if eta else '0s'} for the rest ({summary['parallel']} in parallel)"
        )
    else:
        lines.append("ETA unknown until a run has finished")
    if c["failed"]:
        lines.append("failed runs: see <run>/failed.json and error.txt; retry with `run --retry-failed`")
    return "\n".join(lines)
