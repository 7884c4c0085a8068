"""The split-search figure: FID along the search trajectory, with the selected splits.

``plot_split_series(split_file, out_stem=None) -> matplotlib.figure.Figure``

Top panel: the FID of every trajectory step against a *search position*: the standard split at
0, the easier phase to the left (−1, −2, …: iterations away from the standard split), the harder
phase to the right (+1, +2, …), and the removal phase after the harder phase (a dashed line joins
it to the hardest swap state it starts from).  Phases are shaded and named; the selected series
is marked and labelled with its ids (the standard split with a square).  Bottom panel: classes
per side (train, test) at every position.  Sized for a single journal column (3.4 in wide).

With ``out_stem`` the figure is written as ``<out_stem>.png`` (200 dpi) and ``<out_stem>.pdf``,
deterministically (no creation date or software tag; Agg backend) and atomically.

What the figure reads of a split file is small (:func:`figure_view`): ``make_splits`` hands it to
its drawing process as soon as the series is selected, before the episodes are drawn and the file
is written (:mod:`oodml.splits.figure_worker`); :func:`render_split_series` and
:func:`write_figure_files` are the two halves of writing a figure.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from oodml.io import atomic_write
from oodml.splits.document import figure_view  # what this figure reads of a document
from oodml.splits.file import SplitFile, load_splits

__all__ = [
    "PHASE_COLORS",
    "figure_view",
    "plot_split_series",
    "render_split_series",
    "trajectory_positions",
    "write_figure_files",
]

PHASE_COLORS = {"start": "#444444", "easier": "#2b83ba", "harder": "#d7191c", "removal": "#7b3294"}
_SHADE = {"easier": "#2b83ba", "harder": "#d7191c", "removal": "#7b3294"}


def trajectory_positions(trajectory: list[dict]) -> list[float]:
    """The x position of every trajectory record (see the module docstring).

    Records without a ``parent`` (e.g. an imported ooDML file) are placed at their step."""
    if any(r.get("parent") is None for r in trajectory[1:]):
        return [float(r["step"]) for r in trajectory]
    xs: list[float] = []
    max_harder = 0.0
    first_removal = True
    for r in trajectory:
        ph, parent = r["phase"], r.get("parent")
        if parent is None:
            x = 0.0
        elif ph == "easier":
            x = xs[parent] - 1
        elif ph == "harder":
            x = xs[parent] + 1
            max_harder = max(max_harder, x)
        elif ph == "removal" and first_removal:
            x = max(max_harder, xs[parent]) + 1
            first_removal = False
        else:
            x = xs[parent] + 1
        xs.append(x)
    return xs


def _load(split_file):
    """A :class:`SplitFile`, or what the figure reads of one: a split file's path or a :func:`figure_view`."""
    if isinstance(split_file, SplitFile):
        return split_file
    if isinstance(split_file, dict):
        prov = dict(split_file["provenance"])
        return SimpleNamespace(
            provenance=prov,
            dataset=str(prov.get("dataset", "")),
            trajectory=split_file["trajectory"],
            series=[SimpleNamespace(**s) for s in split_file["series"]],
        )
    return load_splits(split_file)


def plot_split_series(split_file, out_stem=None):
    """Draw (and with ``out_stem`` write as PNG + PDF) the trajectory figure of a split file
    (a path, a :class:`~oodml.splits.SplitFile` or a :func:`figure_view`).  Returns the matplotlib Figure."""
    fig, files = _render(split_file, with_files=out_stem is not None)
    if out_stem is not None:
        write_figure_files(out_stem, *files)
    return fig


def render_split_series(split_file) -> tuple[bytes, bytes]:
    """The bytes of the PNG and the PDF that :func:`plot_split_series` writes."""
    return _render(split_file, with_files=True)[1]


def _render(split_file, with_files: bool):
    """``(figure, (png bytes, pdf bytes) or None)``."""
    import matplotlib  # lazy on purpose: ≈ 0.5–1 s, paid only when a figure is drawn

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    sf = _load(split_file)
    traj = sf.trajectory
    xs = np.asarray(trajectory_positions(traj))
    fids = np.asarray([np.nan if r.get("fid") is None else r["fid"] for r in traj], dtype=float)
    phases = [r["phase"] for r in traj]

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(3.4, 3.3), dpi=200)
        gs = fig.add_gridspec(2, 1, height_ratios=(2.3, 1.0), hspace=0.08)
        ax = fig.add_subplot(gs[0])
        axn = fig.add_subplot(gs[1], sharex=ax)
        _shade_phases(ax, axn, xs, phases)
        has_parents = _plot_fid_chains(ax, traj, xs, fids, phases)
        _mark_series(ax, sf, xs, fids)
        _plot_class_counts(axn, traj, xs, has_parents)
        fig.subplots_adjust(left=0.17, right=0.97, top=0.9, bottom=0.13)
        files = _figure_bytes(fig) if with_files else None
    return fig, files


_RC = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "axes.linewidth": 0.6,
    "svg.hashsalt": "oodml",
}


def _shade_phases(ax, axn, xs, phases) -> None:
    """Shade and name the positions of every phase in both panels."""
    for ph, color in _SHADE.items():
        sel = [x for x, p in zip(xs, phases) if p == ph]
        if sel:
            lo, hi = min(sel) - 0.5, max(sel) + 0.5
            for a in (ax, axn):
                a.axvspan(lo, hi, color=color, alpha=0.07, lw=0)
            ax.text(
                (lo + hi) / 2,
                1.0,
                ph,
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                color=color,
                fontsize=6.5,
            )


def _plot_fid_chains(ax, traj, xs, fids, phases) -> bool:
    """FID lines per phase, each chain starting from its parent; returns whether records have parents."""
    has_parents = not any(r.get("parent") is None for r in traj[1:])
    for ph in ("easier", "harder", "removal"):
        idx = [i for i, p in enumerate(phases) if p == ph]
        if not idx:
            continue
        if has_parents:
            chain = [traj[idx[0]]["parent"]] + idx
            style = dict(color=PHASE_COLORS[ph], lw=0.9)
            # the connector into the removal phase jumps from the hardest state: dashed
            ax.plot(xs[chain[:2]], fids[chain[:2]], ls="--" if ph == "removal" else "-", **style)
            ax.plot(xs[chain[1:]], fids[chain[1:]], marker="o", ms=1.6, **style)
        else:
            ax.plot(xs[idx], fids[idx], ls="none", marker="o", ms=2.5, color=PHASE_COLORS[ph])
    ax.plot([xs[0]], [fids[0]], marker="o", ms=2.5, color=PHASE_COLORS["start"], ls="none")
    return has_parents


def _mark_series(ax, sf, xs, fids) -> None:
    """Mark and label the selected series (the standard split with a square); legend, limits, title."""
    from matplotlib.lines import Line2D  # matplotlib is loaded by plot_split_series already

    traj = sf.trajectory
    fmax = np.nanmax(fids) if np.isfinite(fids).any() else 1.0
    fmin = np.nanmin(fids) if np.isfinite(fids).any() else 0.0
    span = max(fmax - fmin, 1e-12)
    for s in sf.series:
        if not 0 <= s.step < len(traj):
            continue
        x, y = xs[s.step], s.fid
        ax.plot(
            [x],
            [y],
            marker="s" if s.standard else "o",
            ms=4.2,
            mfc="white",
            mec="black",
            mew=0.8,
            ls="none",
            zorder=5,
        )
        ax.annotate(
            str(s.id),
            (x, y),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6,
            fontweight="bold",
            zorder=6,
        )
    marks = [
        Line2D([], [], marker="o", ms=4.2, mfc="white", mec="black", mew=0.8, ls="none"),
        Line2D([], [], marker="s", ms=4.2, mfc="white", mec="black", mew=0.8, ls="none"),
    ]
    ax.legend(
        marks,
        ["selected split (id)", "standard split"],
        loc="upper left",
        frameon=False,
        handletextpad=0.3,
        borderaxespad=0.3,
    )
    ax.set_ylim(fmin - 0.06 * span, fmax + 0.16 * span)
    ax.set_ylabel(f"FID ({sf.provenance.get('level', 'class')} level)")
    ax.tick_params(labelbottom=False, length=2)
    ax.grid(True, lw=0.3, alpha=0.5)
    title = f"{sf.dataset or 'dataset'} · {sf.provenance.get('extractor', '')} features"
    ax.set_title(title, pad=9)


def _plot_class_counts(axn, traj, xs, has_parents: bool) -> None:
    """Bottom panel: classes per side at every position."""
    order = np.argsort(xs, kind="stable")
    ntr = np.asarray([r["n_train"] for r in traj])[order]
    nte = np.asarray([r["n_test"] for r in traj])[order]
    axn.plot(xs[order], ntr, color="#1a9641", lw=0.9, label="train", drawstyle="steps-mid")
    axn.plot(xs[order], nte, color="#fdae61", lw=0.9, ls="--", label="test", drawstyle="steps-mid")
    axn.set_ylabel("classes")
    xlabel = "search position (iterations from the standard split)" if has_parents else "split (by FID)"
    axn.set_xlabel(xlabel)
    axn.legend(loc="lower left", frameon=False, ncol=2, handlelength=1.6)
    top = max(int(ntr.max()), int(nte.max()))
    axn.set_ylim(0, top * 1.15)
    axn.tick_params(length=2)
    axn.grid(True, lw=0.3, alpha=0.5)


def _figure_bytes(fig) -> tuple[bytes, bytes]:
    """The PNG (200 dpi) and the PDF of ``fig``, without dates or software tags."""
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return png.getvalue(), pdf.getvalue()


def write_figure_files(stem, png: bytes, pdf: bytes) -> None:
    """Write ``<stem>.png`` and ``<stem>.pdf`` atomically (creating the folder)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_name(stem.name + ".png"), png)
    atomic_write(stem.with_name(stem.name + ".pdf"), pdf)
