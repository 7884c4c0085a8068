"""A quick look at a dataset: a grid of sample images, one row per class.

:func:`save_sample_grid` picks ``n_classes`` classes and ``per_class`` images of each,
deterministically from ``seed`` (classes kept in dataset order, images in id order), draws them
with matplotlib's Agg renderer (no pyplot, no global backend change), labels each row with its
class and superclass, and writes ``<out>.png`` and ``<out>.pdf``. Each file is written to a
temporary name and renamed into place, and carries no timestamps or version strings that vary
between runs, so identical inputs give byte-identical files.

Example::

    from oodml.datasets import load_dataset
    from oodml.datasets.preview import save_sample_grid
    save_sample_grid(load_dataset("omniglot", root="~/data"), "figures/omniglot_samples")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from oodml.datasets.base import ImageDataset
from oodml.io import atomic_open

_THUMB = 96  # pixels: the longest side of each drawn image
_LABEL_CHARS = 30


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "\u2026"


def choose_samples(
    ds: ImageDataset, n_classes: int = 8, per_class: int = 6, seed: int = 0
) -> list[tuple[str, list[int]]]:
    """``[(class, [image ids])]``: the classes and images :func:`save_sample_grid` draws."""
    if n_classes < 1 or per_class < 1:
        raise ValueError("n_classes and per_class must be at least 1")
    rng = np.random.default_rng(seed)
    by_class = ds.indices_by_class()
    names = list(by_class)
    if n_classes < len(names):
        picked = sorted(rng.choice(len(names), size=n_classes, replace=False).tolist())
        names = [names[i] for i in picked]
    out: list[tuple[str, list[int]]] = []
    for c in names:
        ids = by_class[c]
        if per_class < len(ids):
            ids = np.sort(rng.choice(ids, size=per_class, replace=False))
        out.append((c, [int(i) for i in ids]))
    return out


def save_sample_grid(
    ds: ImageDataset,
    out_path_without_suffix: str | os.PathLike,
    n_classes: int = 8,
    per_class: int = 6,
    seed: int = 0,
) -> list[Path]:
    """Save a grid of sample images as ``<out>.png`` and ``<out>.pdf``; return both paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_path_without_suffix)
    if out.suffix.lower() in (".png", ".pdf"):
        out = out.with_suffix("")
    rows = choose_samples(ds, n_classes, per_class, seed)
    n_cols = max(len(ids) for _, ids in rows)
    cell = 1.0
    label_w = 2.4
    fig = Figure(figsize=(label_w + n_cols * cell, 0.35 + len(rows) * cell))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=label_w / (label_w + n_cols * cell),
        right=0.99,
        top=1 - 0.3 / (0.35 + len(rows) * cell),
        bottom=0.02,
        wspace=0.06,
        hspace=0.06,
    )
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (cls, ids) in enumerate(rows):
        sup = ds.class_superclass.get(cls)
        label = _short(cls) + (f"\n({_short(sup)})" if sup else "")
        for k in range(n_cols):
            ax = axes[r][k]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.85")
                spine.set_linewidth(0.5)
            if k < len(ids):
                img = ds.load_image(ids[k])
                img.thumbnail((_THUMB, _THUMB))
                ax.imshow(np.asarray(img), interpolation="nearest")
            if k == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{ds.name}: {len(rows)} of {len(ds.classes)} classes, seed {seed}", fontsize=9)

    written: list[Path] = []
    for fmt, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "ModDate": None})):
        path = out.with_name(out.name + "." + fmt)
        with atomic_open(path, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=100, metadata=meta)
        written.append(path)
    return written
