"""A study's compute before it is submitted: ``python -m oodml.study plan FILE --estimate``.

::

    from oodml.estimate import estimate_study, format_estimate
    est = estimate_study(load_study("studies/oodml_cub.yaml"))          # times a few steps here
    est = estimate_study(study, seconds_per_step=0.41)                   # or a recorded per-step time
    print(format_estimate(est))

The total is ``Σ_runs epochs × steps_per_epoch × seconds_per_step``. Steps per epoch are exact for
every run: ``iterations_per_epoch``, else the run's fit images (its split's train classes minus
its validation classes, see :func:`oodml.train.resolve_classes`) // ``batch_size``.  The time of
one step is measured on this machine's device by training the study's first run for two short
epochs in a temporary folder and taking the second (warm) epoch's training time per step; or it
is given (``seconds_per_step``, e.g. measured on the cluster's GPUs).  Validation, the final test
evaluation, adaptation stages and queueing are not included: read it as a lower bound of the
training compute.  Hours are GPU-hours when the step ran on CUDA, CPU-hours otherwise.
"""

from __future__ import annotations

import csv
import math
import tempfile
from pathlib import Path
from typing import Any

from oodml.datasets import load_dataset
from oodml.device import resolve_device
from oodml.errors import BadInputError

__all__ = ["estimate_study", "format_estimate", "steps_per_epoch", "time_training_steps"]


def steps_per_epoch(config: dict, dataset=None) -> int:
    """Optimizer steps per epoch of a run (resolved :class:`~oodml.train.TrainConfig` dict)."""
    from oodml.train import TrainConfig, resolve_classes  # lazy: the trainer imports torch

    cfg = TrainConfig.from_dict(config)
    if cfg.iterations_per_epoch:
        return int(cfg.iterations_per_epoch)
    rc = resolve_classes(cfg, dataset=dataset, progress=False)
    n_fit = len(rc.dataset.indices_of(rc.fit_classes))
    return max(1, n_fit // cfg.batch_size)


def time_training_steps(config: dict, steps: int = 5, dataset=None) -> tuple[float, str]:
    """Seconds per training step of ``config`` on its device, and the device's type (``cpu``,
    ``cuda``, ...): two epochs of ``steps`` steps in a temporary folder (no validation), the second
    one timed (the first pays for warm-up: allocations, cuDNN autotuning, caches)."""
    from oodml.train import TrainConfig, train  # lazy: torch

    if steps < 1:
        raise BadInputError(f"--estimate-steps must be at least 1, got {steps}")
    c = dict(config)
    c.update(epochs=3, iterations_per_epoch=int(steps), eval_every=0, tensorboard=False, test_curve=False)
    cfg = TrainConfig.from_dict(c)
    device = resolve_device(cfg.device)
    with tempfile.TemporaryDirectory(prefix="oodml-estimate-") as tmp:
        run_dir = Path(tmp) / "run"
        train(cfg, run_dir, resume=False, progress=False, stop_after_epoch=2, dataset=dataset)
        with open(run_dir / "log.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    seconds = float(rows[-1]["seconds"])
    return seconds / int(steps), getattr(device, "type", str(device))


def estimate_study(
    study, *, steps: int = 5, seconds_per_step: float | None = None, device_kind: str | None = None
) -> dict[str, Any]:
    """The study's training compute (see the module docstring) as a dict: ``runs``, ``steps``
    (total optimizer steps), ``seconds_per_step``, ``source`` (``measured`` / ``given``),
    ``device`` (``cpu``/``cuda``), ``hours`` and ``unit`` (``GPU-hours``/``CPU-hours``)."""
    runs = list(study.runs)
    if not runs:
        raise BadInputError(f"{study.path}: the study has no runs to estimate")
    datasets: dict[tuple, Any] = {}
    per_split: dict[tuple, int] = {}
    total = 0
    for r in runs:
        cfg = r.config
        key = (
            cfg.get("dataset"),
            str(cfg.get("root")),
            str(cfg.get("splits")),
            cfg.get("split"),
            cfg.get("iterations_per_epoch"),
            cfg.get("batch_size"),
            cfg.get("val_fraction"),
            cfg.get("seed"),
        )
        if key not in per_split:
            dkey = (cfg.get("dataset"), str(cfg.get("root")))
            if dkey not in datasets and not cfg.get("iterations_per_epoch"):
                datasets[dkey] = load_dataset(cfg.get("dataset"), root=cfg.get("root"))
            per_split[key] = steps_per_epoch(cfg, dataset=datasets.get(dkey))
        total += int(cfg["epochs"]) * per_split[key]
    if seconds_per_step is None:
        first = runs[0].config
        ds = datasets.get((first.get("dataset"), str(first.get("root"))))
        sps, device = time_training_steps(first, steps=steps, dataset=ds)
        source = f"measured over {steps} steps of run {runs[0].run_id} ({runs[0].loss}) on this machine's {device}"
    else:
        if not (seconds_per_step > 0 and math.isfinite(seconds_per_step)):
            raise BadInputError(f"--seconds-per-step must be a positive number, got {seconds_per_step}")
        sps, device = float(seconds_per_step), (device_kind or "gpu")
        source = "given (--seconds-per-step)"
    hours = total * sps / 3600.0
    unit = "CPU-hours" if device == "cpu" else "GPU-hours"
    return {
        "study": study.name,
        "runs": len(runs),
        "steps": total,
        "seconds_per_step": sps,
        "source": source,
        "device": device,
        "hours": hours,
        "unit": unit,
    }


def format_estimate(est: dict[str, Any]) -> str:
    """One paragraph for the terminal."""
    return (
        f"estimate for study {est['study']}: {est['runs']} runs, {est['steps']:,} training steps in all "
        f"x {est['seconds_per_step']:.3g} s per step ({est['source']}) = {est['hours']:,.1f} {est['unit']} "
        f"of training (validation, test evaluation, adaptation and queueing not included)"
    )
