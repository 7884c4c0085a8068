"""``run_adaptation``: few-shot adaptation and/or linear probes of a trained run folder, recorded
in ``RUN_DIR/adaptation.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oodml.adapt.episodes import resolve_episodes
from oodml.adapt.fewshot import fewshot_adaptation
from oodml.adapt.frozen import FrozenFeatures, RunImages, compute_frozen
from oodml.adapt.options import DEFAULT_SHOTS, MODES, OPTIONS, AdaptOptions, resolve_lr
from oodml.adapt.probe import linear_probe
from oodml.adapt.record import SCHEMA, write_record
from oodml.device import resolve_device
from oodml.errors import BadInputError
from oodml.progress import progress_disabled
from oodml.train import load_run

__all__ = ["run_adaptation"]


def run_adaptation(
    run_dir: str | Path,
    mode: str | Sequence[str] = "fewshot",
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """Few-shot adaptation and/or linear probes of the trained run in ``run_dir``.

    Loads the run's best model (:func:`oodml.train.load_run`), computes the frozen features of its
    test images once, runs ``mode`` (``"fewshot"``, ``"probe"`` or both as a list) for every
    ``k`` in ``shots`` over ``episodes`` episodes (see :mod:`oodml.adapt`), writes
    ``run_dir/adaptation.json`` atomically (keeping other modes recorded there) and returns its
    content. ``opts`` (see :class:`~oodml.adapt.options.AdaptOptions`): ``adapt`` (head/full),
    ``loss``, ``loss_params``, ``iterations``, ``lr``, ``weight_decay``,
    ``batch_size``/``m_per_class`` (default: the run's), ``seed``, ``ks``, ``metrics``,
    ``fraction``, ``probe_l2``, ``probe_iterations``, ``device`` (``auto``),
    ``embed_batch_size``, ``progress``.
    """
    o = _options(opts)
    modes = _modes(mode)
    shots = _shots(shots)
    run_dir = _check_run_dir(run_dir)
    progress = o.progress and not progress_disabled()
    device = resolve_device(o.device)
    run = load_run(run_dir, device=device)
    model, config, dataset = run.model, run.config, run.dataset
    model.to(device).eval()
    classes = list(run.test_classes)
    split = run.split
    split_episodes = getattr(split, "episodes", None) if split is not None else None
    eps, source = resolve_episodes(
        dataset,
        classes,
        shots,
        split_episodes,
        episodes,
        o.seed,
        where=f"split file {getattr(config, 'splits', None) or '(none)'} (split {getattr(split, 'id', None)})",
    )
    images = RunImages(dataset, config, model=model, device=device, batch_size=o.embed_batch_size, progress=progress)
    frozen = compute_frozen(model, dataset, classes, images)

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "dataset": getattr(dataset, "name", None),
        "split": getattr(split, "id", None),
        "fid": getattr(split, "fid", None),
        "test_classes": len(classes),
        "test_images": len(frozen),
    }
    if "fewshot" in modes:
        fs = _fewshot(o, model, config, frozen, eps, images, progress)
        record["fewshot"] = _note_episodes(fs, episodes, source, lr_mult=o.lr_mult)
    if "probe" in modes:
        record["probe"] = _note_episodes(_probe(o, frozen, eps, progress), episodes, source)
    return write_record(run_dir, record)


def _note_episodes(
    result: dict[str, Any], episodes: int | None, source: Mapping[int, str], lr_mult: float | None = None
) -> dict[str, Any]:
    """Add to a mode's record how many episodes were asked for, the ``lr_mult`` given, and for
    each ``k`` where its episodes came from (``"split"`` or ``"drawn"``)."""
    result["options"]["episodes"] = episodes
    if lr_mult is not None:
        result["options"]["lr_mult"] = float(lr_mult)
    for k in source:
        result["shots"][str(k)]["source"] = source[k]
    return result


def _options(opts: Mapping[str, Any]) -> AdaptOptions:
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise BadInputError(f"unknown adaptation option {unknown[0]!r}; valid: {', '.join(OPTIONS)}")
    return AdaptOptions.from_dict(opts, source="adaptation options")


def _modes(mode: str | Sequence[str]) -> list[str]:
    modes = [mode] if isinstance(mode, str) else list(mode)
    modes = ["fewshot" if m in ("few-shot", "few_shot") else m for m in modes]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise BadInputError(f"mode must be fewshot, probe or both (got {mode!r})")
    return [m for m in MODES if m in modes]


def _shots(shots: Sequence[int]) -> list[int]:
    try:
        shots = sorted({int(k) for k in shots})
    except (TypeError, ValueError):
        raise BadInputError(f"shots must be integers (got {shots!r})") from None
    if not shots or shots[0] < 1:
        raise BadInputError(f"shots must be positive integers (got {shots!r})")
    return shots


def _check_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run folder {run_dir} does not exist; give the folder of a trained run")
    if not (run_dir / "best.pt").is_file():
        raise BadInputError(
            f"run folder {run_dir} has no best.pt (the run is not trained or not finished); "
            "train it first (python -m oodml.train) or give another run folder"
        )
    return run_dir


def _fewshot(o: AdaptOptions, model, config, frozen: FrozenFeatures, eps, images: RunImages, progress: bool) -> dict:
    """Few-shot adaptation with the run's batch size and learning rate where the options give none."""
    return fewshot_adaptation(
        model,
        frozen,
        eps,
        adapt=o.adapt,
        loss=o.loss,
        loss_params=o.loss_params,
        iterations=o.iterations,
        lr=resolve_lr(o.lr, o.lr_mult, getattr(config, "lr", None)),
        weight_decay=float(o.weight_decay),
        batch_size=int(o.batch_size if o.batch_size is not None else getattr(config, "batch_size", 112)),
        m_per_class=int(o.m_per_class if o.m_per_class is not None else getattr(config, "m_per_class", 2)),
        seed=o.seed,
        ks=tuple(o.ks),
        metrics=tuple(o.metrics),
        images=images,
        progress=progress,
    )


def _probe(o: AdaptOptions, frozen: FrozenFeatures, eps, progress: bool) -> dict:
    return linear_probe(
        frozen,
        eps,
        fraction=float(o.fraction),
        l2=float(o.probe_l2),
        max_iter=int(o.probe_iterations),
        seed=o.seed,
        progress=progress,
    )
