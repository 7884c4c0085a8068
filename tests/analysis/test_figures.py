"""Tests of :mod:`oodml.analysis.figures`: what the figures draw."""

from __future__ import annotations

import numpy as np
import pandas as pd

from oodml.analysis import figures as F
from oodml.analysis import stats as ST


def test_curve_draws_bootstrap_band_frozen_dashed_and_controls(synthetic):
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    df = synthetic({"glyphs": [0.1, 0.2, 0.3]}, ["margin", "triplet"], [0, 1, 2])
    frozen = df[df["loss"] == "margin"].assign(loss="frozen:pixels", value=0.3, run_id="frozen:pixels")
    ctrl = df[df["split"] == 3].assign(split=9, fid=0.12, control_of=3)
    full = pd.concat([df.assign(control_of=pd.NA), frozen.assign(control_of=pd.NA), ctrl], ignore_index=True)
    fig = F.generalization_curve(full, "glyphs", "recall@1")
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata()) == 3]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), 30.0)  # the frozen reference, percent
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2  # one control series per loss
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # bootstrap bands of the two losses and the (zero-width) frozen line
    cur = ST.curve_intervals(full, "glyphs")
    assert set(cur["split"]) == {1, 2, 3}  # controls stay off the curve itself
    assert len(ST.auc_intervals(full, dataset="glyphs")) == 3
