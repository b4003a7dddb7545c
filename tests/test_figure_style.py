"""Figures a reader without colour vision can read: contour pairs differ by line style and carry a legend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex

from hcc_utils import style


def _contour_styles(fig):
    """(colour, dashed?) of every contour line set of a figure."""
    out = set()
    for ax in fig.axes:
        for c in ax.collections:
            ls = c.get_linestyle()
            if not ls:
                continue
            dashed = any(dash is not None and len(dash) > 0 for _, dash in ls)
            out.add((to_hex(c.get_edgecolor()[0]), dashed))
    return out


def test_reference_and_prediction_differ_in_line_style_and_colour():
    ref, pred = style.CONTOUR_REFERENCE, style.CONTOUR_PREDICTION
    assert ref["linestyles"] != pred["linestyles"] and ref["colors"] != pred["colors"]
    # neither is a red/green pair
    assert {to_hex(ref["colors"]), to_hex(pred["colors"])}.isdisjoint({"#ff0000", "#00ff00", "#008000"})


def test_lits_overlays_use_the_pair_with_a_legend():
    from hcc_utils import lits

    z = np.arange(4)
    yy, xx = np.mgrid[:32, :32]
    disk = ((yy - 16) ** 2 + (xx - 16) ** 2 < 64)
    shifted = ((yy - 18) ** 2 + (xx - 15) ** 2 < 49)
    res = {"slices": pd.DataFrame({"z": z, "role": "held-out", "tumour_voxels": 10, "dice": 0.8}),
           "hu": np.zeros((4, 32, 32)), "label": np.stack([disk * 2] * 4), "pred": np.stack([shifted] * 4).astype(int),
           "window": {"level": 60, "width": 160}}
    fig = lits.overlay_figure(res, n=2)
    styles = _contour_styles(fig)
    assert (to_hex(style.CONTOUR_REFERENCE["colors"]), False) in styles
    assert (to_hex(style.CONTOUR_PREDICTION["colors"]), True) in styles
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["reference tumour", "U-Net"]
    assert [h.get_linestyle() for h in legend.legend_handles] == ["-", "--"]
