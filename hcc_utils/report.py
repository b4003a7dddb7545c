"""Figures of the model comparison (notebook 04): Figure 1, ROC curves of the compared models per cohort, their
AUCs read from Table 2."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import roc_curve

from hcc_utils.files import save_figure, write_json  # noqa: F401  (notebook 04's names)
from hcc_utils.manifest import cohort_label, cohort_order
from hcc_utils.stats import format_p as fmt_p  # noqa: F401  (notebook 04's name for the one p-value formatter)


def roc_points(predictions: pd.DataFrame, models: Sequence[str], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The data of a ROC figure (:func:`roc_figure`): the curve's points per cohort and model.

    Parameters
    ----------
    predictions : DataFrame
        ``patient_id, cohort, model, prob, er``.
    models : list of str
    labels : dict, optional
        Display names per model (a ``label`` column).

    Returns
    -------
    DataFrame
        ``cohort, model, label, threshold, fpr, tpr`` (sklearn's ``roc_curve``; the first threshold is infinite).
    """
    labels = labels or {}
    rows = []
    for c in cohort_order(predictions.cohort):
        for mname in models:
            d = predictions[(predictions.model == mname) & (predictions.cohort == c)]
            if d.empty:
                continue
            fpr, tpr, thr = roc_curve(d["er"].to_numpy(int), d["prob"].to_numpy(float))
            rows.append(pd.DataFrame({"cohort": c, "model": mname, "label": labels.get(mname, mname),
                                      "threshold": thr, "fpr": fpr, "tpr": tpr}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["cohort", "model", "label", "threshold", "fpr", "tpr"])


def roc_figure(predictions: pd.DataFrame, table2: pd.DataFrame, models: Sequence[str],
               labels: dict[str, str] | None = None):
    """Figure 1: ROC curves of the given models, one panel per cohort, AUC (95% CI) from Table 2 in the legend.

    Parameters
    ----------
    predictions : DataFrame
        ``models/predictions.csv`` (patient_id, cohort, model, prob, er).
    table2 : DataFrame
        ``models/table2.csv`` (model, cohort, auc, auc_lower, auc_upper).
    models : list of str
        Model names in legend order (e.g. the chosen DSFR model, ``DSFR-C``, ``Visual``).
    labels : dict, optional
        Display names per model.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = labels or {}
    cohorts = cohort_order(predictions.cohort)  # development, then each external cohort
    points = roc_points(predictions, models, labels)
    fig, axes = plt.subplots(1, len(cohorts), figsize=(4.8 * len(cohorts), 4.6), squeeze=False)
    for ax, c in zip(axes[0], cohorts):
        for mname in models:
            d = points[(points.model == mname) & (points.cohort == c)]
            if d.empty:
                raise ValueError(f"no predictions of model {mname!r} in the {c} cohort")
            r = table2[(table2.model == mname) & (table2.cohort == c)]
            if r.empty:
                raise ValueError(f"Table 2 has no row for model {mname!r}, cohort {c}")
            r = r.iloc[0]
            ax.plot(d["fpr"], d["tpr"], lw=1.6, drawstyle="steps-post",
                    label=f"{labels.get(mname, mname)}: AUC {r.auc:.3f} ({r.auc_lower:.3f}-{r.auc_upper:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=0.8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("Sensitivity")
        n = int(predictions[(predictions.cohort == c)].patient_id.nunique())
        ax.set_title(f"{cohort_label(c)} cohort (n = {n})")
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig
