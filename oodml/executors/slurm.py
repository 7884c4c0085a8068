"""The ``slurm`` executor: Slurm through submitit.

One ``AutoExecutor`` job array (``map_array``), one array task per run, resources from the study
file's ``executor.slurm`` mapping (``partition``, ``time`` (minutes or ``[D-]HH:MM:SS``),
``mem_gb``, ``cpus_per_task``, ``gpus_per_node``, ``array_parallelism``, any other submitit Slurm
parameter such as ``account``, ``qos``, ``constraint``, ``setup``; ``cluster: local`` runs the very
same code path with submitit's local executor, for testing without a cluster). The submitted
callable is a :class:`StudyTask`, a ``submitit.helpers.Checkpointable`` that carries its run's
:class:`~oodml.runs.RunSpec` (pickled with the task: the task does not read the study file
again): on preemption or timeout submitit calls its ``checkpoint()``, which releases the run's
claim and returns a ``DelayedSubmission`` of itself; the job is requeued and the trainer resumes
from ``<run>/checkpoint.pt``. Each run gets a ``queued.json`` marker (job id) so that
``plan``/``status`` show it as *queued* and a second ``run`` does not submit it again while the
job lives (:meth:`SlurmExecutor.job_alive`). ``run`` returns after submission unless ``--wait``
is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import submitit
from submitit.slurm.slurm import SlurmExecutor as _SubmititSlurm

from oodml.config import Config, check_keys
from oodml.errors import BadInputError, OodmlError
from oodml.executors.base import POLL_SECONDS, Executor, counts
from oodml.io import atomic_write, write_json
from oodml.runs import (
    _HOST,
    CLAIM,
    DEFAULT_HEARTBEAT,
    DEFAULT_STALE_AFTER,
    ERROR,
    FAILED,
    QUEUED,
    RunSpec,
    _read_claim,
    close_bar,
    execute_run,
    load_run_fn,
    make_bar,
    pid_alive,
    run_state,
)

__all__ = [
    "STATUS_SOURCE",
    "SlurmExecutor",
    "SlurmOptions",
    "StudyTask",
    "check_slurm_options",
    "job_alive",
    "parse_minutes",
    "quiet_submitit",
    "record_ended_job",
    "release_own_claim",
    "run_slurm",
    "slurm_parameters",
    "slurm_task_state",
    "squeue_states",
]


#: study-file key -> AutoExecutor parameter (generic ones apply to every submitit cluster).
_SLURM_MAP = {
    "time": "timeout_min",
    "timeout_min": "timeout_min",
    "mem_gb": "mem_gb",
    "cpus_per_task": "cpus_per_task",
    "gpus_per_node": "gpus_per_node",
    "nodes": "nodes",
    "tasks_per_node": "tasks_per_node",
    "name": "name",
    "partition": "slurm_partition",
    "array_parallelism": "slurm_array_parallelism",
}
_SLURM_OWN = ("cluster", "max_num_timeout")  # not update_parameters keys (max_num_timeout: the executor's)
_FINISHED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "INTERRUPTED",
    "FINISHED",
    "DONE",
}


def _slurm_valid_keys() -> list[str]:
    extra = sorted(k for k in _SubmititSlurm._valid_parameters() if k not in _SLURM_MAP)
    return list(_SLURM_MAP) + list(_SLURM_OWN) + extra


def parse_minutes(value: Any) -> int:
    """Slurm time (minutes, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) -> whole minutes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(1, int(round(value)))
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if not m:
        raise ValueError(f"cannot read {value!r} as a Slurm time")
    d, a, b, c = m.groups()
    days = int(d or 0)
    parts = [int(x) for x in (a, b, c) if x is not None]
    if d is not None:  # D-HH[:MM[:SS]]
        h, mi, s = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        h, mi, s = parts
    elif len(parts) == 2:
        h, mi, s = 0, parts[0], parts[1]
    else:
        h, mi, s = 0, parts[0], 0
    return max(1, days * 1440 + h * 60 + mi + (1 if s else 0))


def check_slurm_options(opts: Any, study_path: Path | str) -> None:
    """Check ``executor.slurm`` keys (misspellings get the closest valid key)."""
    if not isinstance(opts, dict):
        raise BadInputError(f"{study_path}: executor.slurm must be a mapping (partition, time, mem_gb, ...)")
    check_keys(opts, _slurm_valid_keys(), str(Path(study_path)), "executor.slurm.")
    if "time" in opts:
        try:
            parse_minutes(opts["time"])
        except ValueError:
            raise BadInputError(
                f"{study_path}: executor.slurm.time {opts['time']!r} is not minutes or [D-]HH:MM:SS"
            ) from None
    if opts.get("cluster", "slurm") not in ("slurm", "local", "debug"):
        raise BadInputError(f"{study_path}: executor.slurm.cluster must be slurm, local or debug")


def slurm_parameters(opts: dict, name: str) -> dict[str, Any]:
    """``executor.slurm`` -> keyword arguments of ``AutoExecutor.update_parameters``."""
    params: dict[str, Any] = {"name": name, "timeout_min": 60}
    for key, value in opts.items():
        if key in _SLURM_OWN or value is None:
            continue
        if key in ("time", "timeout_min"):
            params["timeout_min"] = parse_minutes(value)
        elif key in _SLURM_MAP:
            params[_SLURM_MAP[key]] = value
        else:
            params[f"slurm_{key}"] = value
    return params


class StudyTask(submitit.helpers.Checkpointable):
    """The callable a Slurm array task runs: execute one run of a study.

    The task carries what it needs: it is called with the run's :class:`~oodml.runs.RunSpec`
    (pickled by submitit with the job), so the node does not read the study file again.

    Checkpointable: on preemption/timeout submitit calls :meth:`checkpoint`, which releases the
    claim this process holds and resubmits ``self`` with the same run; the trainer resumes
    from the run folder's last checkpoint.
    """

    def __init__(
        self,
        study_name: str,
        *,
        retry_failed: bool = False,
        stale_after: float = DEFAULT_STALE_AFTER,
        heartbeat: float = DEFAULT_HEARTBEAT,
        run_fn_spec: str | None = None,
    ):
        self.study_name = study_name
        self.retry_failed = retry_failed
        self.stale_after = float(stale_after)
        self.heartbeat = float(heartbeat)
        self.run_fn_spec = run_fn_spec

    def __call__(self, run: RunSpec) -> str:
        extra = {}
        with contextlib.suppress(Exception):
            extra["job_id"] = submitit.JobEnvironment().job_id
        if extra.get("job_id"):
            release_own_claim(run.run_dir, str(extra["job_id"]))
        return execute_run(
            run,
            self.study_name,
            run_fn=load_run_fn(self.run_fn_spec),
            retry_failed=self.retry_failed,
            stale_after=self.stale_after,
            heartbeat=self.heartbeat,
            claim_extra=extra,
        )

    def checkpoint(self, run: RunSpec) -> submitit.helpers.DelayedSubmission:  # type: ignore[override]
        claim = run.run_dir / CLAIM
        info = _read_claim(claim)
        if info and info.get("pid") == os.getpid() and info.get("host") == _HOST:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)
        return super().checkpoint(run)


#: Slurm states in which a task ended without finishing its run (the run is then shown as failed).
_ENDED_BADLY = ("CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")
#: Seconds a ``squeue`` answer is reused (one call per job array per status, not one per run).
SQUEUE_TTL = 5.0
_squeue_cache: dict[str, tuple[float, dict[str, str] | None]] = {}
#: Where ``status`` and ``run`` take a Slurm study's states from (printed once, instead of
#: submitit's repeated ``sacct`` warnings on clusters without accounting).
STATUS_SOURCE = "job states from Slurm's squeue and the run folders (no accounting database needed)"


class _DropSacctNoise:
    """A logging filter for submitit's logger: drop its repeated ``sacct`` errors (clusters without
    accounting); oodml reads job states with ``squeue`` (:func:`slurm_task_state`) instead."""

    def filter(self, record) -> bool:  # noqa: A003
        with contextlib.suppress(Exception):
            return "sacct" not in record.getMessage()
        return True


def quiet_submitit() -> None:
    """Install :class:`_DropSacctNoise` on the ``submitit`` logger (idempotent)."""
    log = logging.getLogger("submitit")
    if not any(isinstance(f, _DropSacctNoise) for f in log.filters):
        log.addFilter(_DropSacctNoise())


def squeue_states(job_id: str, ttl: float = SQUEUE_TTL) -> dict[str, str] | None:
    """Task id (``"123_4"``, or ``"123"`` for a plain job) -> Slurm state (``PENDING``, ``RUNNING``,
    ``COMPLETED``, ``CANCELLED``, ...) of every task of the job array ``job_id``, from one
    ``squeue -r -t all`` call (cached ``ttl`` seconds). ``{}`` when the controller no longer knows
    the job (it ended more than ``MinJobAge`` ago); None when squeue cannot answer."""
    array_id = str(job_id).split("_")[0]
    now = time.time()
    hit = _squeue_cache.get(array_id)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    out: dict[str, str] | None = None
    exe = shutil.which("squeue")
    if exe is not None:
        try:
            res = subprocess.run(
                [exe, "-h", "-r", "-t", "all", "-j", array_id, "-o", "%i %T"],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            res = None
        if res is not None and res.returncode == 0:
            out = {}
            for line in res.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 2:
                    out[parts[0]] = parts[1].upper()
        elif res is not None and "invalid job id" in (res.stderr or "").lower():
            out = {}
    _squeue_cache[array_id] = (now, out)
    return out


def slurm_task_state(job_id: str, ttl: float = SQUEUE_TTL) -> str:
    """State of one Slurm task from :func:`squeue_states`: a Slurm state, ``GONE`` (no longer known
    to the controller: ended), or ``UNKNOWN`` (squeue cannot answer)."""
    states = squeue_states(job_id, ttl)
    if states is None:
        return "UNKNOWN"
    return states.get(str(job_id), "GONE")


def release_own_claim(run_dir: Path, job_id: str) -> bool:
    """Remove a claim left by an earlier incarnation of Slurm task ``job_id`` (requeued by
    ``scontrol requeue`` or preemption, killed before it could release it). Slurm never runs two
    incarnations of one task at once, so such a claim is dead even on another node, and the
    restarted task resumes at once instead of waiting ``stale_after`` seconds."""
    path = Path(run_dir) / CLAIM
    info = _read_claim(path)
    if not info or str(info.get("job_id")) != str(job_id):
        return False
    if info.get("pid") == os.getpid() and info.get("host") == _HOST:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def job_alive(marker: dict, mtime: float, stale_after: float) -> bool:
    """Whether the job named by a ``queued.json`` marker may still run its run."""
    cluster = marker.get("cluster")
    job_id = str(marker.get("job_id", ""))
    if cluster in ("local", "debug"):
        if marker.get("host") == _HOST:
            return job_id.isdigit() and pid_alive(int(job_id))
        return time.time() - mtime < stale_after
    if cluster == "slurm":
        state = slurm_task_state(job_id)
        if state == "UNKNOWN":  # squeue cannot tell (not on a cluster node?): trust a recent marker
            return time.time() - mtime < 2 * 86400
        if state == "GONE":
            return False
        return state not in _FINISHED and not state.startswith("CANCELLED")
    return False


def record_ended_job(run_dir: Path, marker: dict) -> bool:
    """When the Slurm task of a ``queued.json`` marker ended badly (cancelled, timed out, failed,
    ...) without finishing its run, record it as the run's ``failed.json`` (so that ``status``
    shows it as failed and ``run --retry-failed`` resubmits it) and remove the marker. Called
    once the job is known not to be alive; returns whether it recorded a failure."""
    if marker.get("cluster") != "slurm":
        return False
    job_id = str(marker.get("job_id", ""))
    state = slurm_task_state(job_id).split()[0]
    if not state.startswith(_ENDED_BADLY):
        return False
    if not (run_dir / FAILED).is_file():
        write_json(
            run_dir / FAILED,
            {
                "error": f"Slurm task {job_id} ended {state} before the run finished",
                "phase": "slurm job",
                "host": _HOST,
                "job_id": job_id,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(run_dir / QUEUED)
    return True


def _any_slurm(value: Any, key: str, source: str) -> Any:  # noqa: ARG001
    if value is not None:
        check_slurm_options(value, source)
    return value


@dataclasses.dataclass
class SlurmOptions(Config):
    #: the ``executor.slurm`` mapping: partition, time, mem_gb, ..., cluster (slurm | local | debug)
    slurm: dict | None = dataclasses.field(default=None, metadata={"coerce": _any_slurm})


class SlurmExecutor(Executor):
    """One submitit job array per call of :meth:`run` (see the module docstring): submit, mark
    each run queued, then (with ``wait``) follow the jobs and record those that died outside
    :func:`~oodml.runs.execute_run`."""

    kind: ClassVar[str] = "slurm"
    description: ClassVar[str] = "a Slurm cluster through submitit (cluster: local tries the same path here)"
    Options = SlurmOptions

    def __init__(self, study, poll: float = POLL_SECONDS):
        super().__init__(study)
        self.poll = poll
        self.opts = dict(study.executor.get("slurm") or {})
        self.cluster = self.opts.get("cluster", "slurm")
        self.folder = study.runs_dir / ".submitit"

    def capacity(self) -> int:
        ap = (self.study.executor.get("slurm") or {}).get("array_parallelism")
        return int(ap) if ap else 10**6

    def run(
        self,
        runs,
        *,
        retry_failed=False,
        run_fn=None,
        run_fn_spec=None,
        adapt_fn=None,
        progress=True,
        wait=True,
        claim_extra=None,  # noqa: ARG002 - each task makes its own (its job id)
    ) -> dict[str, int]:
        """Submit ``runs`` as one submitit job array; wait for them (progress bar) when ``wait``."""
        if run_fn is not None and not run_fn_spec:
            raise OodmlError(
                "the slurm executor runs in other processes: pass the run function as run_fn_spec='module:function'"
            )
        if adapt_fn is not None:
            raise OodmlError("the slurm executor cannot pass adapt_fn to its jobs; use the local executor")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise OodmlError(
                "the slurm executor needs Slurm's sbatch on PATH, which is missing on this machine; "
                "submit from a cluster login node, or set executor.slurm.cluster: local to try the path here"
            )
        if not runs:
            return {"done": 0, "failed": 0, "skipped": 0, "submitted": 0}
        jobs = self._submit(runs, retry_failed, run_fn_spec)
        if not wait:
            return {"submitted": len(jobs)}
        self._follow(jobs, progress)
        for run, job in zip(runs, jobs):
            self._record_outcome(run, job)
        out = counts(self.study, runs)
        out["submitted"] = len(jobs)
        return out

    def _submit(self, runs, retry_failed: bool, run_fn_spec: str | None) -> list:
        """One job array, one task per run (carrying its RunSpec); a ``queued.json`` per run."""
        study, opts, cluster, folder = self.study, self.opts, self.cluster, self.folder
        quiet_submitit()
        ctor = {}
        if opts.get("max_num_timeout") is not None:  # how often a timed-out task is requeued (submitit: 3)
            ctor["slurm_max_num_timeout"] = int(opts["max_num_timeout"])
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster, **ctor)
        try:
            ex.update_parameters(**slurm_parameters(opts, name=f"oodml-{study.name}"))
        except (NameError, AssertionError, ValueError) as exc:
            raise BadInputError(f"{study.path}: executor.slurm: {str(exc).splitlines()[0]}") from None
        task = StudyTask(
            study.name,
            retry_failed=retry_failed,
            stale_after=study.stale_after,
            heartbeat=study.heartbeat,
            run_fn_spec=run_fn_spec,
        )
        jobs = ex.map_array(task, list(runs))  # each task carries its RunSpec
        for run, job in zip(runs, jobs):
            write_json(
                run.run_dir / QUEUED,
                {
                    "executor": "slurm",
                    "cluster": cluster,
                    "job_id": str(job.job_id),
                    "folder": str(folder),
                    "host": _HOST,
                    "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
            )
        first = str(jobs[0].job_id).split("_")[0]
        print(
            f"submitted {len(jobs)} runs of study {study.name} ({cluster}, first job {first}); logs in {folder}",
            file=sys.stderr,
        )
        if cluster == "slurm":
            print(STATUS_SOURCE, file=sys.stderr)
        return jobs

    def _follow(self, jobs: list, progress: bool) -> None:
        """Wait until every job has finished, with the study's progress bar."""
        study = self.study
        bar = make_bar(study, progress)
        try:
            while True:
                if self.cluster == "slurm":
                    finished = all(
                        slurm_task_state(str(j.job_id), ttl=0.0 if i == 0 else SQUEUE_TTL) in ("GONE", *_FINISHED)
                        for i, j in enumerate(jobs)
                    )
                else:
                    finished = all(j.done() for j in jobs)
                n_done = sum(1 for r in study.runs if run_state(r, study.stale_after) == "done")
                bar.update(max(0, n_done - bar.n))
                if finished:
                    break
                time.sleep(self.poll)
        finally:
            close_bar(bar)

    def _record_outcome(self, run: RunSpec, job: Any) -> None:
        """After its job: a run the job left neither done nor failed gets the job's exception as
        its failure (it died outside execute_run: import error, OOM kill); the marker goes."""
        stale_after = self.study.stale_after
        state = run_state(run, stale_after)
        if state not in ("done", "failed", "running"):
            exc = None
            with contextlib.suppress(Exception):
                # without its result file a job's outcome would be asked of sacct, forever on a
                # cluster without accounting: the scheduler's state was recorded by run_state
                if self.cluster != "slurm" or job.paths.result_pickle.exists():
                    exc = job.exception()
            if exc is not None:  # the job died outside execute_run (e.g. import error, OOM kill)
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                write_json(
                    run.run_dir / FAILED,
                    {
                        "error": last,
                        "phase": "slurm job",
                        "host": _HOST,
                        "job_id": str(job.job_id),
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                )
                atomic_write(run.run_dir / ERROR, str(exc) + "\n")
        with contextlib.suppress(FileNotFoundError):
            if run_state(run, stale_after) in ("done", "failed"):
                os.unlink(run.run_dir / QUEUED)

    @classmethod
    def job_alive(cls, marker: dict, mtime: float, stale_after: float) -> bool:
        return job_alive(marker, mtime, stale_after)

    @classmethod
    def record_ended_job(cls, run_dir: Path, marker: dict) -> bool:
        return record_ended_job(run_dir, marker)


def run_slurm(study, runs, *, poll: float = POLL_SECONDS, **kwargs) -> dict[str, int]:
    """:meth:`SlurmExecutor.run` of ``study`` (the function form of earlier releases)."""
    return SlurmExecutor(study, poll=poll).run(runs, **kwargs)
