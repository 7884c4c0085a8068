"""Worker processes on this machine: the runs of a study dealt to per-slot queues, each worker a
``python -m oodml.study run --executor local`` process that does its own queue first and then takes
runs still unclaimed from the others (the claims make that safe). Used by the ``gpus`` executor
(one slot per GPU and ``runs_per_gpu``) and by the ``local`` executor with ``jobs > 1`` (CPU slots).

A worker never outlives the runner that started it: :func:`die_with_parent` (Linux) and
:func:`start_parent_watchdog` (elsewhere, and for workers whose parent is not their runner).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from oodml.executors.base import POLL_SECONDS, counts
from oodml.io import atomic_write
from oodml.runs import close_bar, make_bar, pid_alive, run_state

__all__ = [
    "PARENT_ENV",
    "assign_runs",
    "die_with_parent",
    "make_slots",
    "run_workers",
    "start_parent_watchdog",
    "worker_command",
    "worker_env",
    "worker_queues",
]


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


def run_workers(
    study, runs, slots: Sequence[tuple[str, int]], *, retry_failed=False, run_fn_spec=None, progress=True
) -> dict[str, int]:
    """Execute ``runs`` with one worker process (``python -m oodml.study run --executor local``) per
    ``(device, k)`` slot; device ``"cpu"`` hides the GPUs. Runs are dealt to per-worker queues and
    a worker that finishes early takes runs still unclaimed from the others' queues (the claims
    make that safe). Returns outcome counts."""
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
    return counts(study, runs)
