"""Feature robustness: intraclass correlation of features computed in different masks, and a filter on it.

The default ICC is ICC(3,1) (Shrout & Fleiss; two-way mixed effects, consistency, single measurement): the mask
variants (manual, predicted, eroded, dilated) are fixed conditions, not raters drawn at random, and a constant offset
between them (a dilated mask is larger in every patient) does not change a model trained and applied with the same
mask type, whereas a change of the patients' ranking does. ICC(2,1) (absolute agreement) is available with
``kind="ICC2"``. Both are checked against R's ``psych::ICC`` (``tests/r/icc_references.json``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("ICC2", "ICC3")


def _aligned(tables) -> tuple[list[pd.DataFrame], pd.Index, pd.Index]:
    if len(tables) < 2:
        raise ValueError(f"ICC needs at least two tables (conditions), got {len(tables)}")
    rows = tables[0].index
    cols = tables[0].columns
    for t in tables[1:]:
        rows = rows.intersection(t.index, sort=False)
        cols = cols.intersection(t.columns, sort=False)
    if len(rows) < 2:
        raise ValueError(f"ICC needs at least two patients present in every table, got {len(rows)}")
    if len(cols) == 0:
        raise ValueError("the tables share no feature column")
    return [t.loc[rows, cols].astype(float) for t in tables], rows, cols


def icc_values(data: np.ndarray, kind: str = "ICC3") -> np.ndarray:
    """ICC of each feature from an array of shape (n targets, k conditions, p features).

    Parameters
    ----------
    data : ndarray
        (n, k) for one feature or (n, k, p).
    kind : {'ICC3', 'ICC2'}
        ICC(3,1) consistency or ICC(2,1) absolute agreement (two-way, single measurement).

    Returns
    -------
    ndarray
        p values (a float for 2-D input); NaN where the feature does not vary (no between-target variance and no
        error) or a value is missing.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    x = np.asarray(data, dtype=float)
    one = x.ndim == 2
    if one:
        x = x[:, :, None]
    n, k, _ = x.shape
    grand = x.mean(axis=(0, 1))
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum(0)
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum(0)
    ss_err = ((x - grand) ** 2).sum(axis=(0, 1)) - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse
    if kind == "ICC2":
        den = den + k * (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, (msr - mse) / den, np.nan)
    return float(out[0]) if one else out


def icc(*tables: pd.DataFrame, kind: str = "ICC3") -> pd.Series:
    """Per-feature ICC between feature tables computed under different conditions (e.g. masks).

    Parameters
    ----------
    *tables : DataFrame
        Patients x features, one table per condition; patients (index) and features (columns) common to all tables
        are used.
    kind : {'ICC3', 'ICC2'}
        ICC(3,1) (default) or ICC(2,1); see the module docstring.

    Returns
    -------
    Series
        Feature -> ICC (NaN for a feature without variance), named ``kind``, with ``attrs["n_patients"]``.
    """
    aligned, rows, cols = _aligned(list(tables))
    data = np.stack([t.to_numpy() for t in aligned], axis=1)  # n, k, p
    out = pd.Series(icc_values(data, kind), index=cols, name=kind)
    out.attrs["n_patients"] = len(rows)
    return out


def icc_by_family(families: dict, reference: str = "manual", kind: str = "ICC3") -> pd.DataFrame:
    """ICC of every feature of every family between mask conditions.

    Parameters
    ----------
    families : dict
        Family name (e.g. ``"deep"``, ``"handcrafted"``) -> dict of condition name (e.g. ``"manual"``,
        ``"predicted"``, ``"eroded"``, ``"dilated"``) -> patients x features table.
    reference : str
        Condition every other one is compared with pairwise (when present).
    kind : {'ICC3', 'ICC2'}

    Returns
    -------
    DataFrame
        Long table: ``family``, ``comparison`` (``all`` = every condition jointly, ``<condition> vs
        <reference>``), ``feature``, ``icc``, ``n_patients``.
    """
    frames = []
    for fam, conds in families.items():
        names = list(conds)
        comps = {"all": names} if len(names) > 2 else {}
        if reference in conds:
            comps.update({f"{c} vs {reference}": [c, reference] for c in names if c != reference})
        elif len(names) == 2:
            comps[f"{names[0]} vs {names[1]}"] = names
        for comp, members in comps.items():
            s = icc(*[conds[c] for c in members], kind=kind)
            frames.append(pd.DataFrame({"family": fam, "comparison": comp, "feature": s.index,
                                        "icc": s.to_numpy(), "n_patients": s.attrs["n_patients"]}))
    if not frames:
        raise ValueError("no family has two conditions to compare")
    return pd.concat(frames, ignore_index=True)


def summarise_icc(long: pd.DataFrame, good: float = 0.75, excellent: float = 0.90) -> pd.DataFrame:
    """Median, quartiles and the share of features with ICC >= ``good`` / ``excellent`` (Koo & Li 2016 bands)
    per family and comparison of an :func:`icc_by_family` table."""
    def stats(g):
        v = g["icc"].dropna()
        return pd.Series({"n_features": len(g), "n_undefined": int(g["icc"].isna().sum()),
                          "median": v.median(), "q1": v.quantile(0.25), "q3": v.quantile(0.75),
                          f"share_ge_{good:g}": (v >= good).mean(), f"share_ge_{excellent:g}": (v >= excellent).mean(),
                          "n_patients": int(g["n_patients"].max())})

    return long.groupby(["family", "comparison"], sort=False)[["icc", "n_patients"]].apply(stats).reset_index()


def select_by_icc(table: pd.DataFrame, icc: pd.Series, icc_min: float | None = None) -> pd.DataFrame:
    """The columns of ``table`` whose ICC is at least ``icc_min`` (``None``: the table unchanged).

    Parameters
    ----------
    table : DataFrame
        Patients x features.
    icc : Series
        Feature -> ICC (e.g. :func:`icc`); every column of ``table`` must have an entry (an undefined, NaN ICC
        does not pass).
    icc_min : float, optional

    Returns
    -------
    DataFrame
        The kept columns in their order.

    Raises
    ------
    KeyError
        Columns of ``table`` without an ICC.
    ValueError
        No column passes.
    """
    if icc_min is None:
        return table
    missing = [c for c in table.columns if c not in icc.index]
    if missing:
        raise KeyError(f"{len(missing)} feature(s) have no ICC: {missing[:10]}")
    keep = [c for c in table.columns if icc[c] >= icc_min]
    if not keep:
        raise ValueError(f"no feature has ICC >= {icc_min} (highest {icc.reindex(table.columns).max():.3f})")
    return table[keep]


def plot_icc(long: pd.DataFrame, comparison: str = "all", path=None, title: str = ""):
    """Box plots of the ICC distribution per family for one comparison of an :func:`icc_by_family` table."""
    import matplotlib.pyplot as plt

    sub = long[long["comparison"] == comparison]
    fams = list(dict.fromkeys(sub["family"]))
    data = [sub.loc[sub["family"] == f, "icc"].dropna().to_numpy() for f in fams]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(fams), 3.6))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(fams) + 1), [f"{f}\n(n = {len(d)})" for f, d in zip(fams, data)])
    for y in (0.75, 0.9):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
    ax.set_ylabel(f"ICC ({comparison})")
    ax.set_ylim(min(0.0, *(float(d.min()) for d in data if len(d))), 1.02)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
