"""Executors: *where* a study's runs happen. A study neither knows nor cares.

Every executor hands runs to :func:`oodml.study.execute_run`, which claims a run folder, trains,
adapts and records the outcome, so all of them share the same exactly-once and crash-safety
guarantees. Registry (the ``executor.kind`` of a study file, or ``run --executor``):

``local``
    Sequential, in this process. Each run's stdout/stderr go to ``<run>/log.txt``; one overall
    progress bar (runs done / total, ETA).
``gpus``
    One worker process per GPU *slot* on this machine: :func:`make_slots` gives ``runs_per_gpu``
    slots per visible GPU, :func:`assign_runs` deals the runs round-robin over the slots, and each
    worker (``python -m oodml.study run FILE --executor local --only @queue`` with
    ``CUDA_VISIBLE_DEVICES`` set to its GPU) does its own runs first and then takes any run still
    unclaimed (claims make this safe), so a slow GPU does not hold the study back. Refuses to
    start, with a clear message, when no GPU is visible.
``slurm``
    Slurm through submitit: one ``AutoExecutor`` job array (``map_array``), one array task per
    run, resources from the study file's ``executor.slurm`` mapping (``partition``, ``time``
    (minutes or ``[D-]HH:MM:SS``), ``mem_gb``, ``cpus_per_task``, ``gpus_per_node``,
    ``array_parallelism``, any other submitit Slurm parameter such as ``account``, ``qos``,
    ``constraint``, ``setup``; ``cluster: local`` runs the very same code path with submitit's
    local executor, for testing without a cluster). The submitted callable is a
    :class:`StudyTask`, a ``submitit.helpers.Checkpointable``: on preemption or timeout submitit
    calls its ``checkpoint()``, which releases the run's claim and returns a ``DelayedSubmission``
    of itself; the job is requeued and the trainer resumes from ``<run>/checkpoint.pt``. Each
    run gets a ``queued.json`` marker (job id) so that ``plan``/``status`` show it as *queued*
    and a second ``run`` does not submit it again while the job lives. ``run`` returns after
    submission unless ``--wait`` is given.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from oodml.errors import BadInputError, OodmlError
from oodml.io import atomic_write, write_json

__all__ = [
    "StudyTask",
    "assign_runs",
    "check_slurm_options",
    "choose_devices",
    "get_executor",
    "job_alive",
    "make_slots",
    "parallel_capacity",
    "run_gpus",
    "run_local",
    "run_slurm",
    "slurm_parameters",
    "visible_gpus",
    "worker_queues",
    "die_with_parent",
    "start_parent_watchdog",
    "record_ended_job",
    "release_own_claim",
    "slurm_task_state",
    "squeue_states",
]

POLL_SECONDS = 2.0


def _counts(study, runs) -> dict[str, int]:
    from oodml.study import run_state

    out = {"done": 0, "failed": 0, "skipped": 0}
    for r in runs:
        s = run_state(r, study.stale_after)
        out[s if s in ("done", "failed") else "skipped"] += 1
    return out


# --------------------------------------------------------------------------------------------
# local
# --------------------------------------------------------------------------------------------
def run_local(
    study,
    runs,
    *,
    retry_failed=False,
    run_fn=None,
    run_fn_spec=None,
    adapt_fn=None,
    progress=True,
    wait=True,
    claim_extra=None,
) -> dict[str, int]:
    """Execute ``runs`` one after the other in this process; returns outcome counts
    (``done``, ``failed``, ``skipped``: done or claimed by another runner meanwhile)."""
    from oodml.study import close_bar, execute_run, load_run_fn, make_bar

    jobs = int(study.executor.get("jobs", 1))
    if jobs > 1 and len(runs) > 1:
        if adapt_fn is not None or (run_fn is not None and not run_fn_spec):
            raise OodmlError(
                "executor.jobs > 1 runs in worker processes: pass the run function as "
                "run_fn_spec='module:function' and no adapt_fn, or use jobs: 1"
            )
        slots = [("cpu", k) for k in range(min(jobs, len(runs)))]
        return run_workers(study, runs, slots, retry_failed=retry_failed, run_fn_spec=run_fn_spec, progress=progress)
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


# --------------------------------------------------------------------------------------------
# gpus
# --------------------------------------------------------------------------------------------
def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    Raises :class:`~oodml.errors.OodmlError` when none is visible.
    """
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # broken driver: same as no GPU
        n = 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if n == 0:
        hint = f" (CUDA_VISIBLE_DEVICES={env!r})" if env is not None else ""
        raise OodmlError(
            f"the gpus executor needs at least one visible CUDA GPU, but torch sees none{hint}; "
            "use --executor local on this machine, or --executor slurm for a cluster"
        )
    if env is not None and env.strip():
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:n]
    return [str(i) for i in range(n)]


def choose_devices(setting: Any, visible: Sequence[str]) -> list[str]:
    """Apply the study's ``executor.gpus`` (None/"all", a count, or a list of ids) to ``visible``."""
    visible = [str(v) for v in visible]
    if setting is None or setting == "all":
        return visible
    if isinstance(setting, int) and not isinstance(setting, bool):
        if setting < 1 or setting > len(visible):
            raise OodmlError(
                f"executor.gpus asks for {setting} GPUs but {len(visible)} are visible ({', '.join(visible)})"
            )
        return visible[:setting]
    if isinstance(setting, (list, tuple)):
        chosen = [str(x) for x in setting]
        bad = [x for x in chosen if x not in visible]
        if bad or not chosen:
            raise OodmlError(
                f"executor.gpus lists {', '.join(bad) or 'nothing'}, not among the visible GPUs ({', '.join(visible)})"
            )
        return chosen
    raise OodmlError(f"executor.gpus must be 'all', a count or a list of GPU ids, got {setting!r}")


def make_slots(devices: Sequence[str], runs_per_gpu: int = 1) -> list[tuple[str, int]]:
    """Worker slots ``(device, k)``: ``runs_per_gpu`` per device, device-interleaved so that the
    first runs spread over all GPUs before any GPU gets a second one."""
    if runs_per_gpu < 1:
        raise ValueError("runs_per_gpu must be >= 1")
    return [(str(d), k) for k in range(runs_per_gpu) for d in devices]


def assign_runs(run_ids: Sequence[str], slots: Sequence[Any]) -> list[list[str]]:
    """Deal ``run_ids`` round-robin over the slots (list ``i`` = slot ``i``'s own runs)."""
    out: list[list[str]] = [[] for _ in slots]
    for i, rid in enumerate(run_ids):
        out[i % len(slots)].append(rid)
    return out


def worker_queues(run_ids: Sequence[str], slots: Sequence[Any]) -> list[list[str]]:
    """Each slot's queue: its own runs (:func:`assign_runs`), then every other run, starting with
    the next slot's, to take over work left when it finishes early (claims prevent doubles)."""
    own = assign_runs(run_ids, slots)
    queues = []
    for i in range(len(slots)):
        q = list(own[i])
        for j in range(1, len(slots)):
            q += own[(i + j) % len(slots)]
        queues.append(q)
    return queues


def worker_env(device: str, base: dict | None = None) -> dict[str, str]:
    """Environment of a worker process: its GPU (``"cpu"``: no GPU), no progress bars, and the
    runner's pid (``OODML_PARENT_PID``) for the worker's watchdog (:func:`start_parent_watchdog`)."""
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else str(device)
    env["OODML_QUIET"] = "1"
    env[PARENT_ENV] = str(os.getpid())
    return env


#: Environment variable naming the runner a worker must not outlive.
PARENT_ENV = "OODML_PARENT_PID"
#: Seconds between the watchdog's checks of the parent (platforms without a parent-death signal).
WATCHDOG_SECONDS = 1.0


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: on Linux the child gets ``sig`` when the
    process that started it dies (``prctl(PR_SET_PDEATHSIG)``), even by SIGKILL; if that parent
    is already gone when the child starts, the child signals itself at once. Elsewhere it does
    nothing (the worker's :func:`start_parent_watchdog` covers it).

    SIGTERM (the default) makes a worker leave like Ctrl-C: the claim of its run is released and
    the trainer's last checkpoint stays for the next runner to resume from.
    """

    def _preexec() -> None:
        if not sys.platform.startswith("linux"):
            return
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), int(sig))

    return _preexec


def start_parent_watchdog(
    parent_pid: int | None = None, every: float = WATCHDOG_SECONDS, sig: int = signal.SIGTERM
) -> threading.Thread | None:
    """Start a daemon thread that sends ``sig`` to this process once ``parent_pid`` (default: the
    ``OODML_PARENT_PID`` environment variable) is no longer this process's parent, i.e. the runner
    that started this worker died. The portable counterpart of :func:`die_with_parent`; returns
    the thread, or None when there is no parent to watch."""
    if parent_pid is None:
        text = os.environ.get(PARENT_ENV, "")
        if not text.isdigit():
            return None
        parent_pid = int(text)
    if os.getppid() != parent_pid and parent_pid != os.getpid():
        # started by someone else (e.g. a user re-running a worker command by hand): nothing to watch
        from oodml.study import pid_alive

        if pid_alive(parent_pid):
            return None

    def _watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), int(sig))
                return

    t = threading.Thread(target=_watch, name="oodml-parent-watchdog", daemon=True)
    t.start()
    return t


def worker_command(study, queue_file: Path, *, retry_failed: bool = False, run_fn_spec: str | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "oodml.study",
        "run",
        str(study.path),
        "--runs-dir",
        str(study.runs_dir),
        "--executor",
        "local",
        "--jobs",
        "1",
        "--only",
        f"@{queue_file}",
        "--quiet",
        "--no-check-data",
        "--stale-after",
        repr(float(study.stale_after)),
    ]
    if retry_failed:
        cmd.append("--retry-failed")
    if run_fn_spec:
        cmd += ["--run-fn", run_fn_spec]
    return cmd


def run_gpus(
    study,
    runs,
    *,
    retry_failed=False,
    run_fn=None,
    run_fn_spec=None,
    adapt_fn=None,
    progress=True,
    wait=True,
    devices: Sequence[str] | None = None,
) -> dict[str, int]:
    """Execute ``runs`` with one worker process per GPU slot (see the module docstring).

    ``devices`` overrides the visible GPUs (CUDA_VISIBLE_DEVICES entries). ``run_fn`` cannot
    cross a process boundary: give ``run_fn_spec`` (``module:function``) instead.
    """
    if run_fn is not None and not run_fn_spec:
        raise OodmlError(
            "the gpus executor runs in worker processes: pass the run function as run_fn_spec='module:function'"
        )
    if adapt_fn is not None:
        raise OodmlError("the gpus executor cannot pass adapt_fn to its workers; use the local executor")
    devs = choose_devices(study.executor.get("gpus"), visible_gpus() if devices is None else devices)
    slots = make_slots(devs, int(study.executor.get("runs_per_gpu", 1)))
    return run_workers(study, runs, slots, retry_failed=retry_failed, run_fn_spec=run_fn_spec, progress=progress)


def run_workers(
    study, runs, slots: Sequence[tuple[str, int]], *, retry_failed=False, run_fn_spec=None, progress=True
) -> dict[str, int]:
    """Execute ``runs`` with one worker process (``python -m oodml.study run --executor local``) per
    ``(device, k)`` slot; device ``"cpu"`` hides the GPUs. Runs are dealt to per-worker queues and
    a worker that finishes early takes runs still unclaimed from the others' queues (the claims
    make that safe). Returns outcome counts."""
    from oodml.study import close_bar, make_bar, run_state

    ids = [r.run_id for r in runs]
    if not ids:
        return {"done": 0, "failed": 0, "skipped": 0}
    slots = slots[: len(ids)]
    wdir = study.runs_dir / ".workers"
    wdir.mkdir(parents=True, exist_ok=True)
    procs = []
    bar = make_bar(study, progress)
    try:
        for (dev, k), queue in zip(slots, worker_queues(ids, slots)):
            tag = f"{dev}-{k}" if dev == "cpu" else f"gpu{dev}-{k}"
            qfile = wdir / f"{tag}.queue"
            atomic_write(qfile, "\n".join(queue) + "\n")
            log = open(wdir / f"{tag}.log", "ab")
            cmd = worker_command(study, qfile, retry_failed=retry_failed, run_fn_spec=run_fn_spec)
            procs.append(
                (
                    subprocess.Popen(
                        cmd,
                        env=worker_env(dev),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=die_with_parent(os.getpid()),
                    ),
                    log,
                    dev,
                    k,
                )
            )
        while True:
            alive = [p for p, *_ in procs if p.poll() is None]
            n_done = sum(1 for r in study.runs if run_state(r, study.stale_after) == "done")
            bar.update(max(0, n_done - bar.n))
            if not alive:
                break
            time.sleep(POLL_SECONDS)
    except BaseException:
        for p, *_ in procs:
            if p.poll() is None:
                p.terminate()
        for p, *_ in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=30)
        raise
    finally:
        for _, log, _, _ in procs:
            log.close()
        close_bar(bar)
    for p, _, dev, k in procs:
        if p.returncode not in (0, 1):  # 1 = some run failed, recorded in its folder
            tag = f"{dev}-{k}" if dev == "cpu" else f"gpu{dev}-{k}"
            print(
                f"warning: worker {tag} exited with status {p.returncode}; see {wdir / f'{tag}.log'}", file=sys.stderr
            )
    return _counts(study, runs)


# --------------------------------------------------------------------------------------------
# slurm (submitit)
# --------------------------------------------------------------------------------------------
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
    from submitit.slurm.slurm import SlurmExecutor

    extra = sorted(k for k in SlurmExecutor._valid_parameters() if k not in _SLURM_MAP)
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
    from oodml.study import _check_keys

    if not isinstance(opts, dict):
        raise BadInputError(f"{study_path}: executor.slurm must be a mapping (partition, time, mem_gb, ...)")
    _check_keys("executor.slurm.", opts, _slurm_valid_keys(), Path(study_path))
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
    """The callable a Slurm array task runs: execute one run of a study by id.

    Checkpointable: on preemption/timeout submitit calls :meth:`checkpoint`, which releases the
    claim this process holds and resubmits ``self`` with the same run id; the trainer resumes
    from the run folder's last checkpoint.
    """

    def __init__(
        self,
        study_path: str,
        runs_dir: str,
        retry_failed: bool = False,
        stale_after: float | None = None,
        run_fn_spec: str | None = None,
    ):
        self.study_path = study_path
        self.runs_dir = runs_dir
        self.retry_failed = retry_failed
        self.stale_after = stale_after
        self.run_fn_spec = run_fn_spec

    def _study(self):
        from oodml.study import load_study

        study = load_study(self.study_path, runs_dir=self.runs_dir)
        if self.stale_after is not None:
            study.executor["stale_after"] = float(self.stale_after)
        return study

    def __call__(self, run_id: str) -> str:
        from oodml.study import execute_run, load_run_fn

        study = self._study()
        run = study.get(run_id)
        extra = {}
        with contextlib.suppress(Exception):
            extra["job_id"] = submitit.JobEnvironment().job_id
        if extra.get("job_id"):
            release_own_claim(run.run_dir, str(extra["job_id"]))
        return execute_run(
            run,
            study.name,
            run_fn=load_run_fn(self.run_fn_spec),
            retry_failed=self.retry_failed,
            stale_after=study.stale_after,
            heartbeat=study.heartbeat,
            claim_extra=extra,
        )

    def checkpoint(self, run_id: str) -> submitit.helpers.DelayedSubmission:  # type: ignore[override]
        from oodml.study import _HOST, CLAIM, _read_claim

        claim = Path(self.runs_dir) / run_id / CLAIM
        info = _read_claim(claim)
        if info and info.get("pid") == os.getpid() and info.get("host") == _HOST:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)
        return super().checkpoint(run_id)


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
    import logging

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
    from oodml.study import _HOST, CLAIM, _read_claim

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
    from oodml.study import _HOST, pid_alive

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
    from oodml.study import _HOST, FAILED, QUEUED

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


def run_slurm(
    study,
    runs,
    *,
    retry_failed=False,
    run_fn=None,
    run_fn_spec=None,
    adapt_fn=None,
    progress=True,
    wait=True,
    poll: float = POLL_SECONDS,
) -> dict[str, int]:
    """Submit ``runs`` as one submitit job array; wait for them (progress bar) when ``wait``."""
    from oodml.study import _HOST, QUEUED, close_bar, make_bar, run_state

    if run_fn is not None and not run_fn_spec:
        raise OodmlError(
            "the slurm executor runs in other processes: pass the run function as run_fn_spec='module:function'"
        )
    if adapt_fn is not None:
        raise OodmlError("the slurm executor cannot pass adapt_fn to its jobs; use the local executor")
    opts = dict(study.executor.get("slurm") or {})
    cluster = opts.get("cluster", "slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise OodmlError(
            "the slurm executor needs Slurm's sbatch on PATH, which is missing on this machine; "
            "submit from a cluster login node, or set executor.slurm.cluster: local to try the path here"
        )
    if not runs:
        return {"done": 0, "failed": 0, "skipped": 0, "submitted": 0}
    folder = study.runs_dir / ".submitit"
    quiet_submitit()
    ctor = {}
    if opts.get("max_num_timeout") is not None:  # how often a timed-out task is requeued (submitit: 3)
        ctor["slurm_max_num_timeout"] = int(opts["max_num_timeout"])
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster, **ctor)
    try:
        ex.update_parameters(**slurm_parameters(opts, name=f"oodml-{study.name}"))
    except (NameError, AssertionError, ValueError) as exc:
        raise BadInputError(f"{study.path}: executor.slurm: {str(exc).splitlines()[0]}") from None
    task = StudyTask(str(Path(study.path).resolve()), str(study.runs_dir), retry_failed, study.stale_after, run_fn_spec)
    jobs = ex.map_array(task, [r.run_id for r in runs])
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
    if not wait:
        return {"submitted": len(jobs)}
    bar = make_bar(study, progress)
    try:
        while True:
            if cluster == "slurm":
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
            time.sleep(poll)
    finally:
        close_bar(bar)
    for run, job in zip(runs, jobs):
        state = run_state(run, study.stale_after)
        if state not in ("done", "failed", "running"):
            exc = None
            with contextlib.suppress(Exception):
                # without its result file a job's outcome would be asked of sacct, forever on a
                # cluster without accounting: the scheduler's state was recorded by run_state
                if cluster != "slurm" or job.paths.result_pickle.exists():
                    exc = job.exception()
            if exc is not None:  # the job died outside execute_run (e.g. import error, OOM kill)
                last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                write_json(
                    run.run_dir / "failed.json",
                    {
                        "error": last,
                        "phase": "slurm job",
                        "host": _HOST,
                        "job_id": str(job.job_id),
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                )
                atomic_write(run.run_dir / "error.txt", str(exc) + "\n")
        with contextlib.suppress(FileNotFoundError):
            if run_state(run, study.stale_after) in ("done", "failed"):
                os.unlink(run.run_dir / QUEUED)
    out = _counts(study, runs)
    out["submitted"] = len(jobs)
    return out


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
EXECUTORS = {"local": run_local, "gpus": run_gpus, "slurm": run_slurm}


def get_executor(kind: str):
    try:
        return EXECUTORS[kind]
    except KeyError:
        raise BadInputError(f"unknown executor {kind!r}; choose {', '.join(EXECUTORS)}") from None


def parallel_capacity(study) -> int:
    """How many runs the study's executor runs at once (for the ETA)."""
    ex = study.executor
    kind = ex.get("kind", "local")
    if kind == "gpus":
        g = ex.get("gpus")
        if isinstance(g, int) and not isinstance(g, bool):
            n = g
        elif isinstance(g, (list, tuple)):
            n = len(g)
        else:
            n = 1
            with contextlib.suppress(Exception):
                import torch

                n = max(1, torch.cuda.device_count())
        return n * int(ex.get("runs_per_gpu", 1))
    if kind == "slurm":
        ap = (ex.get("slurm") or {}).get("array_parallelism")
        return int(ap) if ap else 10**6
    return int(ex.get("jobs", 1))
