"""Names, units and the order of losses: how the numbers of a results table are labelled.

Metric display names and axis labels (:func:`metric_name`, :func:`metric_label`, units from
:func:`is_percent_metric`), file-name-safe names (:func:`sanitize`), the FID axis label, the
probe settings' names, and the fixed order of losses (registry order, :func:`loss_order`) that
tables sort by and figures colour by (:func:`oodml.analysis.style.loss_style`).
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Iterable

from oodml.analysis.results import PROBE_METRIC


# --------------------------------------------------------------------------------------------
# Names, units, styles
# --------------------------------------------------------------------------------------------
def sanitize(name: str) -> str:
    """A file-name-safe form of ``name``: ``@`` dropped, other characters outside
    ``[A-Za-z0-9_-]`` become ``-`` (``"glyphs_curve_recall@1"`` -> ``"glyphs_curve_recall1"``)."""
    s = str(name).replace("@", "")
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", s).strip("-")
    return s or "unnamed"


_PERCENT = re.compile(r"^((recall|precision)@\d+|r_precision|map@r|nmi|top1_.*|map@1000|f1)$")


def _base_metric(metric: str) -> str:
    for suffix in ("_gain", "_zero_shot"):
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def is_percent_metric(metric: str) -> bool:
    """Whether ``metric`` is a fraction in [0, 1] shown in percent (its gains in percentage points)."""
    return bool(_PERCENT.match(_base_metric(metric)))


def _scale(metric: str, percent: bool | None) -> float:
    if percent is None:
        percent = is_percent_metric(metric)
    return 100.0 if percent else 1.0


def metric_name(metric: str) -> str:
    """Display name of a metric without units: ``recall@1`` -> ``Recall@1``, ``map@r`` -> ``MAP@R``."""
    base = _base_metric(metric)
    m = re.match(r"^(recall|precision)@(\d+)$", base)
    if m:
        return f"{m.group(1).capitalize()}@{m.group(2)}"
    named = {
        "r_precision": "R-Precision",
        "map@r": "MAP@R",
        "nmi": "NMI",
        "map@1000": "mAP@1000",
        "f1": "F1 (clustering)",
        "rho_spectrum": "ρ-spectrum decay",
        "intra_inter_ratio": "intra/inter distance",
    }
    if base in named:
        return named[base]
    m = PROBE_METRIC.match(base)
    if m:
        return "Top-1 accuracy"
    return base


def metric_label(metric: str, percent: bool | None = None) -> str:
    """Axis label with units: ``Recall@1 (%)``; for a ``_gain`` metric ``Recall@1 gain (pp)``."""
    unit_pct = _scale(metric, percent) == 100.0
    name = metric_name(metric)
    if metric.endswith("_gain"):
        return f"{name} gain ({'pp' if unit_pct else 'abs.'})"
    return f"{name} (%)" if unit_pct else name


FID_LABEL = "FID (train→test, extractor features)"


def fid_label(extractor: str | None = None) -> str:
    """The FID axis label, naming the feature extractor when known."""
    return f"FID (train→test, {extractor} features)" if extractor else FID_LABEL


@functools.lru_cache(maxsize=1)
def registry_losses() -> tuple[str, ...]:
    """Names of the registered objectives, in registry order (fixes colours and markers)."""
    # lazy on purpose: oodml.losses imports torch (~3.6 s); reading and labelling a table needs none
    from oodml.losses import list_objectives

    return tuple(o["name"] for o in list_objectives())


def loss_order(losses: Iterable[str] | None = None) -> list[str]:
    """``losses`` (default: all registered) sorted in registry order, unknown names after them
    in alphabetical order, without duplicates."""
    reg = registry_losses()
    if losses is None:
        return list(reg)
    present = set(losses)
    known = [name for name in reg if name in present]
    return known + sorted(present - set(reg))


def loss_index(loss: str) -> int:
    """The fixed style index of ``loss`` (its registry position, or a stable hash beyond it)."""
    reg = registry_losses()
    if loss in reg:
        return reg.index(loss)
    return len(reg) + zlib.crc32(loss.encode("utf-8")) % 997


def setting_order(setting: str) -> int:
    """Sort key of a probe setting: ``<k>shot`` by k, then ``half``."""
    m = re.match(r"^(\d+)shot$", setting)
    return int(m.group(1)) if m else 10**9


def setting_label(setting: str, short: bool = False) -> str:
    """``"5shot"`` -> ``"5-shot"``, ``"half"`` -> ``"half of the images"`` (``"half"`` if ``short``)."""
    m = re.match(r"^(\d+)shot$", setting)
    if m:
        return f"{m.group(1)}-shot"
    if setting == "half":
        return "half" if short else "half of the images"
    return setting
