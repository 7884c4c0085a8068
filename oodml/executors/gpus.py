"""The ``gpus`` executor: one worker process per GPU *slot* on this machine.

:func:`~oodml.executors.workers.make_slots` gives ``runs_per_gpu`` slots per chosen GPU
(``executor.gpus``: ``all``, a count or a list of ids), :func:`~oodml.executors.workers.assign_runs`
deals the runs round-robin over the slots, and each worker (``python -m oodml.study run FILE
--executor local --only @queue`` with ``CUDA_VISIBLE_DEVICES`` set to its GPU) does its own runs
first and then takes any run still unclaimed (claims make this safe), so a slow GPU does not hold
the study back. Refuses to start, with a clear message, when no GPU is visible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from oodml.config import Config
from oodml.errors import OodmlError
from oodml.executors.base import Executor, positive_int
from oodml.executors.workers import make_slots, run_workers

__all__ = ["GpusExecutor", "GpusOptions", "choose_devices", "run_gpus", "visible_gpus"]


def _any(value: Any, key: str, source: str) -> Any:  # noqa: ARG001 - checked against the visible GPUs at run time
    return value


@dataclasses.dataclass
class GpusOptions(Config):
    #: ``all`` (or absent), a count, or a list of GPU ids
    gpus: Any = dataclasses.field(default=None, metadata={"coerce": _any})
    #: worker processes per GPU
    runs_per_gpu: int = dataclasses.field(default=1, metadata={"coerce": positive_int})


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    Raises :class:`~oodml.errors.OodmlError` when none is visible.
    """
    try:
        import torch  # lazy: torch is a measured startup cost

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


class GpusExecutor(Executor):
    """One worker process per GPU slot (see the module docstring).

    ``devices`` overrides the visible GPUs (CUDA_VISIBLE_DEVICES entries).
    """

    kind: ClassVar[str] = "gpus"
    description: ClassVar[str] = "this machine's GPUs: one worker process per GPU and runs_per_gpu"
    Options = GpusOptions

    def __init__(self, study, devices: Sequence[str] | None = None):
        super().__init__(study)
        self.devices = devices

    def capacity(self) -> int:
        ex = self.study.executor
        g = ex.get("gpus")
        if isinstance(g, int) and not isinstance(g, bool):
            n = g
        elif isinstance(g, (list, tuple)):
            n = len(g)
        else:
            n = 1
            with contextlib.suppress(Exception):
                import torch  # lazy: torch is a measured startup cost (status of a gpus study)

                n = max(1, torch.cuda.device_count())
        return n * int(ex.get("runs_per_gpu", 1))

    def run(
        self,
        runs,
        *,
        retry_failed=False,
        run_fn=None,
        run_fn_spec=None,
        adapt_fn=None,
        progress=True,
        wait=True,  # noqa: ARG002 - the workers are always awaited
        claim_extra=None,  # noqa: ARG002
    ) -> dict[str, int]:
        """Execute ``runs`` with one worker process per GPU slot. ``run_fn`` cannot cross a
        process boundary: give ``run_fn_spec`` (``module:function``) instead."""
        study = self.study
        if run_fn is not None and not run_fn_spec:
            raise OodmlError(
                "the gpus executor runs in worker processes: pass the run function as run_fn_spec='module:function'"
            )
        if adapt_fn is not None:
            raise OodmlError("the gpus executor cannot pass adapt_fn to its workers; use the local executor")
        devs = choose_devices(study.executor.get("gpus"), visible_gpus() if self.devices is None else self.devices)
        slots = make_slots(devs, int(study.executor.get("runs_per_gpu", 1)))
        return run_workers(study, runs, slots, retry_failed=retry_failed, run_fn_spec=run_fn_spec, progress=progress)


def run_gpus(study, runs, *, devices: Sequence[str] | None = None, **kwargs) -> dict[str, int]:
    """:meth:`GpusExecutor.run` of ``study`` (the function form of earlier releases)."""
    return GpusExecutor(study, devices=devices).run(runs, **kwargs)
