"""Tests of :mod:`oodml.analysis.style`: a fixed colour, marker and line style per loss."""

from __future__ import annotations

import matplotlib

from oodml import analysis as A
from oodml.analysis import figures as F


def test_colour_marker_per_loss_fixed_regardless_of_present_losses(synthetic):
    reg = A.registry_losses()
    styles = [A.loss_style(loss) for loss in reg]
    assert len({(s["color"], s["linestyle"]) for s in styles}) == len(reg)  # unique, greyscale-safe pairs
    assert len({s["marker"] for s in styles}) == len(reg)
    assert A.loss_style("margin")["color"] == matplotlib.colors.to_hex(
        __import__("seaborn").color_palette("colorblind")[0]
    )
    assert A.loss_order(["supcon", "zzz", "margin", "aaa"]) == ["margin", "supcon", "aaa", "zzz"]

    def colours(losses):
        df = synthetic({"g": [0.1, 0.3]}, losses, [0])
        fig = F.generalization_curve(df, "g")
        return {ln.get_label(): ln.get_color() for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}

    few, many = colours(["triplet", "arcface"]), colours(list(reg[:6]) + ["arcface", "myloss"])
    assert few["triplet"] == many["triplet"] == A.loss_style("triplet")["color"]
    assert few["arcface"] == many["arcface"] == A.loss_style("arcface")["color"]
    assert many["myloss"] == A.loss_style("myloss")["color"]
    assert A.sanitize("glyphs_curve_recall@1") == "glyphs_curve_recall1" and A.sanitize("a/b c") == "a-b-c"
