"""Executors: *where* a study's runs happen. A study neither knows nor cares.

Every executor hands runs to :func:`oodml.runs.execute_run`, which claims a run folder, trains,
adapts and records the outcome, so all of them share the same exactly-once and crash-safety
guarantees. Each is a class (:mod:`oodml.executors.base`) registered once in
:mod:`oodml.executors.registry` (the ``executor.kind`` of a study file, or ``run --executor``):

``local`` (:mod:`~oodml.executors.local`)
    Sequential, in this process (or ``jobs`` CPU worker processes). Each run's stdout/stderr go
    to ``<run>/log.txt``; one overall progress bar (runs done / total, ETA).
``gpus`` (:mod:`~oodml.executors.gpus`)
    One worker process per GPU *slot* on this machine (:mod:`~oodml.executors.workers`).
``slurm`` (:mod:`~oodml.executors.slurm`)
    Slurm through submitit: one job array, one task per run, each task carrying its RunSpec.

The names of earlier releases (``run_local``, ``run_gpus``, ``run_slurm``, ``job_alive``, ...)
stay importable from here.
"""

from oodml.executors.base import POLL_SECONDS, Executor
from oodml.executors.gpus import GpusExecutor, choose_devices, run_gpus, visible_gpus
from oodml.executors.local import LocalExecutor, run_local
from oodml.executors.registry import (
    EXECUTOR_KEYS,
    EXECUTOR_KINDS,
    EXECUTORS,
    check_executor,
    executor_class,
    get_executor,
    job_alive,
    make_executor,
    parallel_capacity,
    record_ended_job,
)
from oodml.executors.slurm import (
    STATUS_SOURCE,
    SlurmExecutor,
    StudyTask,
    check_slurm_options,
    parse_minutes,
    quiet_submitit,
    release_own_claim,
    run_slurm,
    slurm_parameters,
    slurm_task_state,
    squeue_states,
)
from oodml.executors.workers import (
    PARENT_ENV,
    WATCHDOG_SECONDS,
    assign_runs,
    die_with_parent,
    make_slots,
    run_workers,
    start_parent_watchdog,
    worker_command,
    worker_env,
    worker_queues,
)

__all__ = [
    "EXECUTORS",
    "EXECUTOR_KEYS",
    "EXECUTOR_KINDS",
    "PARENT_ENV",
    "POLL_SECONDS",
    "STATUS_SOURCE",
    "WATCHDOG_SECONDS",
    "Executor",
    "GpusExecutor",
    "LocalExecutor",
    "SlurmExecutor",
    "StudyTask",
    "assign_runs",
    "check_executor",
    "check_slurm_options",
    "choose_devices",
    "die_with_parent",
    "executor_class",
    "get_executor",
    "job_alive",
    "make_executor",
    "make_slots",
    "parallel_capacity",
    "parse_minutes",
    "quiet_submitit",
    "record_ended_job",
    "release_own_claim",
    "run_gpus",
    "run_local",
    "run_slurm",
    "run_workers",
    "slurm_parameters",
    "slurm_task_state",
    "squeue_states",
    "start_parent_watchdog",
    "visible_gpus",
    "worker_command",
    "worker_env",
    "worker_queues",
]
