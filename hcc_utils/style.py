"""The book's look: one matplotlib style and one formatter of displayed numbers.

The palette is Okabe-Ito (distinguishable with every common colour-vision deficiency); lines also differ by style.
P values are formatted by :func:`hcc_utils.stats.format_p` (re-exported here as ``format_p``).
"""
from __future__ import annotations

import math
import numbers

from hcc_utils.stats import format_p  # noqa: F401  (the one p-value formatter)

#: Okabe-Ito colours, in the order lines are drawn.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
#: Line styles paired with :data:`PALETTE`, so curves differ without colour.
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)), "-", "--"]
#: Contour colours for overlays on a grey CT: reference (white, solid) and prediction (orange, dashed).
CONTOUR_REFERENCE = {"colors": "#FFFFFF", "linestyles": "solid"}
CONTOUR_PREDICTION = {"colors": "#E69F00", "linestyles": "dashed"}
#: Perceptually uniform colour map for heatmaps.
HEATMAP_CMAP = "viridis"


def rc_params() -> dict:
    """The matplotlib settings of the book (readable at the page width of about 7 inches, high-DPI PNG).

    Returns
    -------
    dict
        For ``matplotlib.rcParams.update`` or ``matplotlib.rc_context``.
    """
    from cycler import cycler

    return {
        "figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight",
        "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10, "ytick.labelsize": 10,
        "legend.fontsize": 10, "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False,
        "axes.prop_cycle": cycler(color=PALETTE) + cycler(linestyle=LINESTYLES),
        "image.cmap": HEATMAP_CMAP, "lines.linewidth": 1.8,
        "svg.fonttype": "none",
    }


def contour_legend(target, reference: str = "reference", prediction: str = "prediction", **kwargs):
    """A legend naming the reference (solid) and prediction (dashed) contours of :data:`CONTOUR_REFERENCE` and
    :data:`CONTOUR_PREDICTION` (contour sets make no legend entries of their own).

    Parameters
    ----------
    target : matplotlib.axes.Axes or matplotlib.figure.Figure
        Where the legend goes.
    reference, prediction : str
        The two labels.
    **kwargs
        Passed to ``legend``.

    Returns
    -------
    matplotlib.legend.Legend
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=spec["colors"], ls=spec["linestyles"], lw=1.5, label=label)
               for spec, label in ((CONTOUR_REFERENCE, reference), (CONTOUR_PREDICTION, prediction))]
    # white lines need a dark legend background to be seen
    kw = {"facecolor": "#404040", "framealpha": 1.0, "frameon": True, "labelcolor": "white", "fontsize": 8, **kwargs}
    return target.legend(handles=handles, **kw)


def apply() -> None:
    """Make :func:`rc_params` the current matplotlib style."""
    import matplotlib

    matplotlib.rcParams.update(rc_params())


def fmt(x, digits: int = 3, missing: str = "NA") -> str:
    """A number as the book prints it: fixed decimals, ``missing`` for None/NaN, integers without decimals.

    Parameters
    ----------
    x : float, int or None
    digits : int
        Decimals of a non-integer value.
    missing : str
        Text for None, NaN or an infinite value.

    Returns
    -------
    str
    """
    if x is None:
        return missing
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, numbers.Integral):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return missing
    return f"{v:.{digits}f}"


def fmt_ci(est, lower, upper, digits: int = 3, missing: str = "NA") -> str:
    """``est (95% CI lower to upper)``, one formatter for every interval in the text.

    Parameters
    ----------
    est, lower, upper : float or None
    digits : int
    missing : str

    Returns
    -------
    str
    """
    if fmt(est, digits, "") == "":
        return missing
    if fmt(lower, digits, "") == "" or fmt(upper, digits, "") == "":
        return fmt(est, digits)
    return f"{fmt(est, digits)} (95% CI {fmt(lower, digits)} to {fmt(upper, digits)})"


def fmt_percent(x, digits: int = 1, missing: str = "NA") -> str:
    """A proportion (0-1) as a percentage, ``55.6%``.

    Parameters
    ----------
    x : float or None
    digits : int
    missing : str

    Returns
    -------
    str
    """
    s = fmt(None if x is None else 100 * float(x), digits, "")
    return s + "%" if s else missing
