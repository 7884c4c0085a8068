"""The run folder: what one run of a study is, who holds it, what state it is in, and executing it.

Everything the study planner (:mod:`oodml.study`) and the executors (:mod:`oodml.executors`)
share about a single run lives here, so that both import this module and neither imports the
other:

- :class:`RunSpec`, one cell of a study grid (or a search trial / tuned run), built by the one
  constructor :meth:`RunSpec.cell`;
- the folder's files (:data:`CLAIM`, :data:`QUEUED`, :data:`FAILED`, :data:`METRICS`, ...);
- **claims** (exactly-once execution across runners and hosts: :func:`try_claim`, :class:`Claim`,
  :func:`claim_is_stale`, :func:`pid_alive`);
- **state** (:func:`is_done`, :func:`run_state`, :func:`states`); a ``queued.json`` marker is
  judged by the liveness test its executor registered in :data:`JOB_TESTS` (the executors
  register theirs when :mod:`oodml.executors` is imported, which :mod:`oodml.study` does);
- **execution** (:func:`execute_run`: claim, train, adapt, record the outcome, release);
- the study's overall **progress bar** (:func:`make_bar`, :func:`close_bar`).

See :mod:`oodml.study` for the folder layout and the crash-safety rules.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from oodml.errors import BadInputError
from oodml.io import atomic_write, dumps_json, stable_hash, write_json
from oodml.progress import progress_bar

__all__ = [
    "HASH_EXCLUDED",
    "JOB_TESTS",
    "STATES",
    "Claim",
    "RunSpec",
    "claim_is_stale",
    "close_bar",
    "execute_run",
    "is_done",
    "load_run_fn",
    "make_bar",
    "pid_alive",
    "run_state",
    "states",
    "try_claim",
]

RUN_SCHEMA = "oodml.study.run/1"
#: TrainConfig keys left out of the run id (where/how fast a run happens, not what it computes).
HASH_EXCLUDED = ("root", "splits", "device", "workers", "tensorboard", "eval_batch_size")
#: Run states, in display order.
STATES = ("done", "running", "queued", "failed", "waiting", "pending")  # waiting: a tuned run whose search runs

DEFAULT_STALE_AFTER = 900.0  # seconds without heartbeat before another host's claim is stale
DEFAULT_HEARTBEAT = 30.0  # seconds between heartbeats

CLAIM = "claim.json"
QUEUED = "queued.json"
FAILED = "failed.json"
ERROR = "error.txt"
METRICS = "metrics.json"
ADAPT_DONE = "adapt_done.json"
RUN_JSON = "study_run.json"  # the trainer owns run.json (its provenance)
TIMING = "study_timing.json"
LOG = "log.txt"

RunFn = Callable[[dict, Path], Any]
AdaptFn = Callable[[Path, dict], Any]


# --------------------------------------------------------------------------------------------
# Run spec
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid: what to train (``config``), where (``run_dir``) and what to adapt."""

    run_id: str
    run_dir: Path
    dataset: str
    split: int | None
    fid: float | None
    loss: str
    loss_params: dict
    seed: int
    config: dict
    adapt: tuple
    order: tuple = field(compare=False)
    #: "default", "trial" (a hyperparameter-search trial), "tuned-standard" or "tuned-per-split"
    tuning: str = "default"
    #: for trials and tuned runs: their search (see oodml.search.make_ref); None for default runs
    search: dict | None = field(default=None, compare=False)

    def describe(self, study: str) -> dict:
        """The content of ``study_run.json``."""
        extra = {} if self.search is None else {"tuning": self.tuning, "search": self.search}
        return {
            **extra,
            "schema": RUN_SCHEMA,
            "study": study,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "split": self.split,
            "fid": self.fid,
            "loss": self.loss,
            "loss_params": self.loss_params,
            "seed": self.seed,
            "hash_excludes": list(HASH_EXCLUDED),
            "config": self.config,
            "adapt": [dict(s) for s in self.adapt],
        }

    @classmethod
    def cell(
        cls,
        run_id: str,
        runs_dir: Path,
        dataset: dict,
        split: int | None,
        fid: Any,
        loss: dict,
        seed: int,
        config: dict,
        adapt: Any,
        order: tuple,
        tuning: str = "default",
        search: dict | None = None,
    ) -> RunSpec:
        """The one constructor of the planner and the search: a run of the resolved ``dataset``
        entry (``{name, ...}``) and ``loss`` entry (``{name, params}``) in ``runs_dir/run_id``."""
        return cls(
            run_id=run_id,
            run_dir=Path(runs_dir) / run_id,
            dataset=dataset["name"],
            split=split,
            fid=None if fid is None else float(fid),
            loss=loss["name"],
            loss_params=loss["params"],
            seed=seed,
            config=config,
            adapt=tuple(adapt),
            order=order,
            tuning=tuning,
            search=search,
        )


# --------------------------------------------------------------------------------------------
# Claims (exactly-once execution across runners and hosts)
# --------------------------------------------------------------------------------------------
_HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, to detect pid reuse."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _proc_is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] in ("Z", "X")


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """Whether ``pid`` is a live process on this host (and still the one started at ``proc_start``)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    if _proc_is_zombie(int(pid)):
        return False
    if proc_start is not None:
        now = _proc_start(int(pid))
        if now is not None and now != proc_start:
            return False
    return True


def _read_claim(path: Path) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}  # being written (or written by a killed process)
    return data if isinstance(data, dict) else {}


def claim_is_stale(info: dict, mtime: float, stale_after: float, now: float | None = None) -> bool:
    """Whether a claim no longer protects its run.

    Same host: stale iff its pid is not alive (or was reused). Other host: stale iff its heartbeat
    (the claim file's mtime) is older than ``stale_after`` seconds. An unreadable claim (being
    written, or left half-written by a killed process) is stale after 60 seconds.
    """
    now = time.time() if now is None else now
    if not info or "pid" not in info:
        return now - mtime > 60.0
    if info.get("host") == _HOST:
        return not pid_alive(info["pid"], info.get("proc_start"))
    return now - mtime > stale_after


def _claim_status(path: Path, stale_after: float) -> tuple[dict | None, bool]:
    """(claim content or None when absent, whether it is live)."""
    info = _read_claim(path)
    if info is None:
        return None, False
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None, False
    return info, not claim_is_stale(info, mtime, stale_after)


class Claim:
    """A held claim on a run folder; keeps its heartbeat fresh from a daemon thread."""

    def __init__(self, path: Path, info: dict, heartbeat: float):
        self.path = path
        self.info = info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.held():
                with contextlib.suppress(OSError):
                    os.utime(self.path)

    def held(self) -> bool:
        info = _read_claim(self.path)
        return bool(info) and info.get("token") == self.info["token"]

    def release(self) -> None:
        self._stop.set()
        if self.held():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _remove_stale(path: Path, seen: dict, stale_after: float) -> None:
    """Remove ``path`` if it still is the stale claim ``seen``, under a short reclaim lock."""
    lock = path.with_name(path.name + ".reclaim")
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - lock.stat().st_mtime > 60.0:  # left by a killed reclaimer
                os.unlink(lock)
        return
    try:
        info, live = _claim_status(path, stale_after)
        if info is not None and not live and info == seen:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def try_claim(
    run_dir: Path,
    stale_after: float = DEFAULT_STALE_AFTER,
    heartbeat: float = DEFAULT_HEARTBEAT,
    extra: dict | None = None,
) -> Claim | None:
    """Take the run folder's claim (``O_CREAT|O_EXCL``), reclaiming a stale one; None if it is taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    for _ in range(2):
        info = {
            "pid": os.getpid(),
            "host": _HOST,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "proc_start": _proc_start(os.getpid()),
            "token": uuid.uuid4().hex,
        }
        info.update(extra or {})
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen, live = _claim_status(path, stale_after)
            if live:
                return None
            if seen is not None:
                _remove_stale(path, seen, stale_after)
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(dumps_json(info))
                fh.flush()
                os.fsync(fh.fileno())
            return Claim(path, info, heartbeat)
        except BaseException:  # e.g. SIGTERM (a runner's end) between taking the claim and holding it
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    return None


# --------------------------------------------------------------------------------------------
# Run state
# --------------------------------------------------------------------------------------------
def stage_key(stage: dict) -> str:
    """Identifier of an adaptation stage in ``adapt_done.json``."""
    return stable_hash(stage)


def _metrics_complete(run_dir: Path) -> bool:
    p = run_dir / METRICS
    if not p.is_file():
        return False
    try:
        json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def _stages_done(run_dir: Path) -> dict:
    p = run_dir / ADAPT_DONE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data.get("stages", {}) if isinstance(data, dict) else {}


def is_done(run: RunSpec) -> bool:
    """Trained (complete ``metrics.json``) and every current adaptation stage recorded."""
    if not _metrics_complete(run.run_dir):
        return False
    if run.adapt:
        done = _stages_done(run.run_dir)
        return all(stage_key(s) in done for s in run.adapt)
    return True


# --------------------------------------------------------------------------------------------
# Jobs of executors that queue runs (queued.json)
# --------------------------------------------------------------------------------------------
class JobTest(Protocol):
    """What an executor that leaves ``queued.json`` markers tells about its jobs."""

    def job_alive(self, marker: dict, mtime: float, stale_after: float) -> bool: ...

    def record_ended_job(self, run_dir: Path, marker: dict) -> bool: ...


#: ``queued.json``'s ``executor`` -> its job test; filled by the executor registry
#: (:mod:`oodml.executors`), so that the run folder does not import the executors.
JOB_TESTS: dict[str, JobTest] = {}


def run_state(run: RunSpec, stale_after: float = DEFAULT_STALE_AFTER) -> str:
    """One of ``done``, ``running`` (live claim), ``queued`` (submitted, job alive), ``failed``,
    ``waiting`` (a tuned run whose search runs), ``pending``."""
    if is_done(run):
        return "done"
    _, live = _claim_status(run.run_dir / CLAIM, stale_after)
    if live:
        return "running"
    q = run.run_dir / QUEUED
    if q.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError, UnicodeDecodeError):
            marker = json.loads(q.read_text(encoding="utf-8"))
            test = JOB_TESTS.get(marker.get("executor", "slurm"))
            if test is not None:
                if test.job_alive(marker, q.stat().st_mtime, stale_after):
                    return "queued"
                test.record_ended_job(run.run_dir, marker)  # cancelled / timed out: failed, not queued forever
    if (run.run_dir / FAILED).is_file():
        return "failed"
    if run.search is not None and run.search["role"] == "tuned":
        from oodml.search import search_complete  # lazy: oodml.search imports the objectives (torch)

        if not search_complete(run.search):
            return "waiting"
    return "pending"


def states(study: Any) -> dict[str, str]:
    """run id -> state for every run of a study (anything with ``runs`` and ``stale_after``)."""
    return {r.run_id: run_state(r, study.stale_after) for r in study.runs}


# --------------------------------------------------------------------------------------------
# Executing one run
# --------------------------------------------------------------------------------------------
def train_run(config: dict, run_dir: Path) -> Any:
    """The default ``run_fn``: :func:`oodml.train.train` on the resolved config (resumes)."""
    from oodml.train import TrainConfig, train  # lazy: the trainer imports torch (a measured startup cost)

    return train(TrainConfig.from_dict(config), run_dir, resume=True, progress=False)


def adapt_run(run_dir: Path, stage: dict) -> Any:
    """The default ``adapt_fn``: :func:`oodml.adapt.run_adaptation` for one stage."""
    from oodml.adapt import run_adaptation  # lazy: torch

    opts = {k: v for k, v in stage.items() if k not in ("mode", "shots", "episodes")}
    opts.setdefault("progress", False)
    return run_adaptation(
        run_dir, mode=stage["mode"], shots=tuple(stage["shots"]), episodes=stage.get("episodes"), **opts
    )


@contextlib.contextmanager
def _redirect_output(log_path: Path):
    """Send this process's stdout/stderr (Python and C level) to ``log_path`` (appending)."""
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = []
    try:
        for target in (1, 2):
            try:
                saved.append((target, os.dup(target)))
            except OSError:
                continue
            os.dup2(fd, target)
        quiet = os.environ.get("OODML_QUIET")
        os.environ["OODML_QUIET"] = "1"  # no progress bars in log files
        try:
            with (
                open(os.dup(fd), "w", encoding="utf-8", buffering=1) as fh,
                contextlib.redirect_stdout(fh),
                contextlib.redirect_stderr(fh),
            ):
                yield
        finally:
            if quiet is None:
                os.environ.pop("OODML_QUIET", None)
            else:
                os.environ["OODML_QUIET"] = quiet
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        for target, dup in saved:
            os.dup2(dup, target)
            os.close(dup)
        os.close(fd)


def _record_failure(run_dir: Path, exc: BaseException, phase: str) -> None:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    last = (traceback.format_exception_only(type(exc), exc)[-1]).strip()

    atomic_write(run_dir / ERROR, tb)
    with contextlib.suppress(OSError), open(run_dir / LOG, "a", encoding="utf-8") as fh:
        fh.write(f"=== failed during {phase}: {last} (traceback in {ERROR}) ===\n")
    write_json(
        run_dir / FAILED,
        {
            "error": last,
            "phase": phase,
            "host": _HOST,
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _clear_failure(run_dir: Path) -> None:
    """Forget a failed attempt (``--retry-failed``): its ``failed.json`` and ``error.txt``."""
    for name in (FAILED, ERROR):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir / name)


def execute_run(
    run: RunSpec,
    study_name: str,
    *,
    run_fn: RunFn | None = None,
    adapt_fn: AdaptFn | None = None,
    retry_failed: bool = False,
    stale_after: float = DEFAULT_STALE_AFTER,
    heartbeat: float = DEFAULT_HEARTBEAT,
    claim_extra: dict | None = None,
) -> str:
    """Claim, train (``run_fn(config, run_dir)``), adapt (``adapt_fn(run_dir, stage)``) and release.

    Returns ``"done"``, ``"failed"`` or ``"skipped"`` (already done, failed without
    ``retry_failed``, or claimed by another runner). Output goes to ``run_dir/log.txt``. An
    exception is recorded in ``failed.json``/``error.txt`` and not raised; ``KeyboardInterrupt``
    and ``SystemExit`` are re-raised after the claim is released.
    """
    run_fn = run_fn or train_run
    adapt_fn = adapt_fn or adapt_run
    if run.search is not None:  # a search trial or a tuned run: train with its drawn / chosen settings
        from oodml.search import bind_run_fn  # lazy: oodml.search imports the objectives (torch)

        run_fn = bind_run_fn(run.search, run_fn)
    if is_done(run) or ((run.run_dir / FAILED).is_file() and not retry_failed):
        return "skipped"
    claim = None
    try:
        # inside the try: a SIGTERM right after the claim is taken still releases it
        claim = try_claim(run.run_dir, stale_after, heartbeat, claim_extra)
        if claim is None:
            return "skipped"
        if is_done(run):  # finished by another runner between our check and our claim
            return "skipped"
        if (run.run_dir / FAILED).is_file():
            if not retry_failed:
                return "skipped"
            _clear_failure(run.run_dir)
        write_json(run.run_dir / RUN_JSON, run.describe(study_name))
        phase = "train"
        started = time.time()
        try:
            with _redirect_output(run.run_dir / LOG):
                print(
                    f"=== oodml.study {study_name} run {run.run_id} on {_HOST} pid {os.getpid()} at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')} ===",
                    flush=True,
                )
                if not _metrics_complete(run.run_dir):
                    run_fn(dict(run.config), run.run_dir)
                    if not _metrics_complete(run.run_dir):
                        raise RuntimeError(f"the run function returned without writing {METRICS}")
                for stage in run.adapt:
                    key = stage_key(stage)
                    if key in _stages_done(run.run_dir):
                        continue
                    phase = f"adapt {stage['mode']}"
                    adapt_fn(run.run_dir, dict(stage))
                    done = _stages_done(run.run_dir)
                    done[key] = dict(stage)
                    write_json(run.run_dir / ADAPT_DONE, {"schema": "oodml.study.adapt_done/1", "stages": done})
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            _record_failure(run.run_dir, exc, phase)
            return "failed"
        write_json(
            run.run_dir / TIMING,
            {
                "seconds": round(time.time() - started, 3),
                "host": _HOST,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run.run_dir / QUEUED)
        return "done"
    finally:
        if claim is not None:
            claim.release()


def load_run_fn(spec: str | None) -> RunFn | None:
    """Import a ``module:function`` run function (``--run-fn``); None for the default trainer."""
    if not spec:
        return None
    mod, _, fn = spec.partition(":")
    if not mod or not fn:
        raise BadInputError(f"--run-fn {spec!r} must look like module:function")

    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"--run-fn {spec!r} cannot be imported ({exc})") from None


# --------------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------------
def make_bar(study: Any, progress: bool):
    """The overall bar of a study (runs done / total, ETA) on the terminal's original stderr
    (a run's own output goes to its ``log.txt``)."""
    done = sum(1 for s in states(study).values() if s == "done")
    stream = None
    if progress:
        with contextlib.suppress(OSError, ValueError):
            stream = open(os.dup(2), "w", encoding="utf-8", buffering=1)
    bar = progress_bar(
        enabled=progress,
        total=len(study.runs),
        initial=done,
        desc=f"study {study.name}",
        unit="run",
        file=stream,
        leave=True,
        delay=0,
        smoothing=0.0,
    )
    bar._oodml_stream = stream  # closed by close_bar
    return bar


def close_bar(bar) -> None:
    bar.close()
    stream = getattr(bar, "_oodml_stream", None)
    if stream is not None:
        stream.close()
