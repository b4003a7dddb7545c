"""rms-style nomogram for a Cox model, returned as data (plots, ipywidgets and a JavaScript calculator share it).

Scaling as R ``rms::nomogram``: each predictor's axis spans its displayed range; the predictor whose
``beta * x`` varies most over its displayed range gets 0-100 points, the others are scaled by the same factor
(points = scale * (beta*x - min over the axis)).  Categorical predictors put all levels on one axis (reference
level beta*x = 0).  Total points -> linear predictor ``lp = total / scale + sum(min beta*x) - centre`` (centred at the
mean of the design columns times beta, as rms ``cph``) -> ``S(t) = S0(t) ** exp(lp)`` with ``S0`` the baseline
survival at the mean covariates (Efron-type hazard, as R ``survfit.coxph`` after an Efron fit).  Verified against
rms 6.5 on survival's ``lung`` (tests/r/references.json).  Own code: no Python library draws rms nomograms.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .survival import cox_fit

__all__ = ["NomogramAxis", "Nomogram", "NomogramCalculator", "cox_baseline_survival", "default_axis_range"]


def cox_baseline_survival(time, event, lp_centred, t: float) -> float:
    """Baseline survival S0(t) at the mean covariates (lp = 0) with the Efron-type cumulative hazard
    (R ``survfit.coxph`` default after ``ties="efron"``: ``ctype=2``, ``stype=2``).

    Parameters
    ----------
    time, event : array-like
    lp_centred : array-like
        Centred linear predictor of the fitted subjects.
    t : float

    Returns
    -------
    float
        S0(t).
    """
    T = np.asarray(time, float)
    E = np.asarray(event, int)
    w = np.exp(np.asarray(lp_centred, float))
    ut, inv = np.unique(T, return_inverse=True)
    wsum = np.bincount(inv, weights=w, minlength=len(ut))
    at_risk = np.cumsum(wsum[::-1])[::-1]  # sum of w over T >= u
    d = np.bincount(inv, weights=E, minlength=len(ut)).astype(int)
    wd = np.bincount(inv, weights=w * E, minlength=len(ut))
    H = 0.0
    for k in np.flatnonzero((d > 0) & (ut <= t)):
        frac = np.arange(d[k]) / d[k]
        H += float(np.sum(1.0 / (at_risk[k] - frac * wd[k])))
    return float(np.exp(-H))


def default_axis_range(x: pd.Series) -> tuple[float, float]:
    """rms ``datadist`` display range: quantiles ``q`` and ``1 - q`` with ``q = 10 / max(n, 200)``.

    Parameters
    ----------
    x : Series
        Values of a continuous predictor.

    Returns
    -------
    (float, float)
        Lower and upper end of the displayed range.
    """
    q = 10 / max(len(x), 200)
    lo, hi = np.quantile(np.asarray(x, float), [q, 1 - q])
    return float(lo), float(hi)


@dataclass
class NomogramAxis:
    """One predictor axis: tick values (numbers or level labels) and their points."""
    variable: str
    kind: str  # "continuous" | "categorical"
    values: list
    points: list
    beta: dict  # design column -> coefficient
    min_bx: float  # min over the axis of beta * x


@dataclass
class Nomogram:
    """A fitted rms-style nomogram.

    Attributes
    ----------
    axes : list of NomogramAxis
    scale : float
        Points per unit of linear predictor.
    centre : float
        sum(mean(design) * beta) of the fitted data.
    baseline_survival : float
        S0(t) at the mean covariates.
    t : float
        Horizon of the survival axis.
    coefficients : dict
        Design column -> beta.
    """
    axes: list
    scale: float
    centre: float
    baseline_survival: float
    t: float
    coefficients: dict
    reference: dict = field(default_factory=dict)
    time_unit: str = "months"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_cox(cls, df: pd.DataFrame, duration_col: str, event_col: str, covariates, t: float,
                 axes: dict | None = None, reference: dict | None = None, n_ticks: int = 6,
                 time_unit: str = "months") -> "Nomogram":
        """Fit a Cox model (Efron) and build its nomogram.

        Parameters
        ----------
        axes : dict, optional
            Tick values per continuous variable (default: ``n_ticks`` rounded values over the rms display range,
            :func:`default_axis_range`); the displayed range sets the point scale as in rms.
        reference : dict, optional
            Reference levels of categorical covariates.

        Returns
        -------
        Nomogram
            The nomogram of the fitted model at time ``t``.
        """
        axes = dict(axes or {})
        fit, X = cox_fit(df, duration_col, event_col, covariates, reference)
        beta = dict(zip(X.columns, np.asarray(fit.params, float)))
        centre = float(np.sum(X.mean().to_numpy() * np.asarray(fit.params)))
        lp = X.to_numpy() @ np.asarray(fit.params) - centre
        s0 = cox_baseline_survival(df[duration_col], df[event_col], lp, t)
        spec = {}
        for v in covariates:
            cols = [c for c in X.columns if c == v or c.startswith(f"{v}[")]
            if cols == [v]:
                if v in axes:
                    ticks = [float(a) for a in axes[v]]
                elif np.unique(df[v]).size <= 2:
                    ticks = [float(a) for a in np.unique(df[v])]
                else:
                    lo, hi = default_axis_range(df[v])
                    ticks = [float(a) for a in np.unique(np.round(np.linspace(lo, hi, n_ticks), 2))]
                spec[v] = {"kind": "continuous", "values": ticks}
            else:
                col = df[v]
                levels = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(
                    col.unique(), key=str)
                spec[v] = {"kind": "categorical", "values": [str(lv) for lv in levels]}
        return cls.from_coefficients(beta, centre, s0, t, spec, reference=reference, time_unit=time_unit)

    @classmethod
    def from_coefficients(cls, coefficients: dict, centre: float, baseline_survival: float, t: float,
                          spec: dict, reference: dict | None = None, time_unit: str = "months") -> "Nomogram":
        """Build the nomogram from a fitted model's numbers.

        Parameters
        ----------
        coefficients : dict
            Design column -> beta (``var`` for continuous, ``var[level]`` for non-reference levels).
        centre : float
            sum(mean(design) * beta).
        baseline_survival : float
            S0(t) at the mean covariates.
        spec : dict
            Variable -> ``{"kind": "continuous"|"categorical", "values": [...]}`` (ticks, or all levels with the
            reference included).

        Returns
        -------
        Nomogram
        """
        axis_objs = []
        for v, sp in spec.items():
            if sp["kind"] == "continuous":
                if v not in coefficients:
                    raise ValueError(f"no coefficient for {v!r}")
                b = {v: float(coefficients[v])}
                bx = [b[v] * float(a) for a in sp["values"]]
                vals = [float(a) for a in sp["values"]]
            elif sp["kind"] == "categorical":
                vals = [str(a) for a in sp["values"]]
                b = {f"{v}[{lv}]": float(coefficients[f"{v}[{lv}]"]) for lv in vals if f"{v}[{lv}]" in coefficients}
                if len(b) != len(vals) - 1:
                    raise ValueError(f"{v!r}: expected coefficients for all levels but one (the reference) of {vals}")
                bx = [b.get(f"{v}[{lv}]", 0.0) for lv in vals]
            else:
                raise ValueError(f"{v!r}: kind must be 'continuous' or 'categorical'")
            axis_objs.append(NomogramAxis(v, sp["kind"], vals, [], b, float(min(bx))))
        ranges = [max(_axis_bx(a)) - min(_axis_bx(a)) for a in axis_objs]
        if not ranges or max(ranges) <= 0:
            raise ValueError("all predictors have zero effect over their displayed range")
        scale = 100.0 / max(ranges)
        for a in axis_objs:
            a.points = [float(scale * (bx - a.min_bx)) for bx in _axis_bx(a)]
        return cls(axes=axis_objs, scale=float(scale), centre=float(centre),
                   baseline_survival=float(baseline_survival), t=float(t),
                   coefficients={k: float(b) for k, b in coefficients.items()}, reference=dict(reference or {}),
                   time_unit=time_unit)

    # ------------------------------------------------------------------ use
    def _axis(self, name):
        for a in self.axes:
            if a.variable == name:
                return a
        raise KeyError(f"no axis {name!r}; axes: {[a.variable for a in self.axes]}")

    def points_for(self, variable: str, value) -> float:
        """Points of one predictor value (continuous values may lie off the displayed ticks).

        Parameters
        ----------
        variable : str
            Predictor name.
        value : float or str
            Its value (a level for a categorical predictor).

        Returns
        -------
        float
            Points on the variable's axis.
        """
        a = self._axis(variable)
        if a.kind == "continuous":
            return float(self.scale * (a.beta[variable] * float(value) - a.min_bx))
        key = str(value)
        if key not in a.values:
            raise ValueError(f"{variable}: level {value!r} not among {a.values}")
        return float(self.scale * (a.beta.get(f"{variable}[{key}]", 0.0) - a.min_bx))

    def lp_from_points(self, total):
        """Centred linear predictor for total points.

        Parameters
        ----------
        total : float or array-like
            Total points.

        Returns
        -------
        float or ndarray
            Centred linear predictor.
        """
        return np.asarray(total, float) / self.scale + sum(a.min_bx for a in self.axes) - self.centre

    def points_from_lp(self, lp):
        """Total points for a centred linear predictor.

        Parameters
        ----------
        lp : float or array-like
            Centred linear predictor.

        Returns
        -------
        ndarray
            Total points.
        """
        return (np.asarray(lp, float) + self.centre - sum(a.min_bx for a in self.axes)) * self.scale

    def survival_from_lp(self, lp):
        """Predicted survival at ``t`` for a centred linear predictor.

        Parameters
        ----------
        lp : float or array-like
            Centred linear predictor.

        Returns
        -------
        ndarray
            Predicted survival at ``t``.
        """
        return self.baseline_survival ** np.exp(np.asarray(lp, float))

    def points_for_survival(self, surv):
        """Total points giving survival ``surv`` at ``t`` (for the survival axis ticks).

        Parameters
        ----------
        surv : float or array-like
            Survival probabilities at ``t``, in (0, 1).

        Returns
        -------
        ndarray
            Total points.
        """
        s = np.asarray(surv, float)
        if ((s <= 0) | (s >= 1)).any():
            raise ValueError("survival probabilities must lie strictly between 0 and 1")
        lp = np.log(np.log(s) / np.log(self.baseline_survival))
        return self.points_from_lp(lp)

    def predict(self, values: dict) -> dict:
        """Points per variable, total points, linear predictor and survival at ``t`` for one patient.

        Parameters
        ----------
        values : dict
            Variable -> value (numbers for continuous, level labels for categorical).

        Returns
        -------
        dict
            ``points`` (dict per variable), ``total``, ``lp`` (centred), ``survival`` (S(t)), ``risk`` (1 - S(t)).
        """
        missing = [a.variable for a in self.axes if a.variable not in values]
        if missing:
            raise ValueError(f"missing value(s) for {missing}")
        pts = {a.variable: self.points_for(a.variable, values[a.variable]) for a in self.axes}
        total = float(sum(pts.values()))
        lp = float(self.lp_from_points(total))
        s = float(self.survival_from_lp(lp))
        return {"points": pts, "total": total, "lp": lp, "survival": s, "risk": 1 - s}

    def total_points_axis(self, n_ticks: int = 11) -> pd.DataFrame:
        """Ticks of the total-points axis with their linear predictor and survival.

        Parameters
        ----------
        n_ticks : int
            Number of ticks.

        Returns
        -------
        DataFrame
            points, lp, survival.
        """
        hi = sum(max(a.points) for a in self.axes)
        pts = np.linspace(0, hi, n_ticks)
        lp = self.lp_from_points(pts)
        return pd.DataFrame({"total_points": pts, "lp": lp, "survival": self.survival_from_lp(lp)})

    def axes_frame(self) -> pd.DataFrame:
        """Long table: variable, kind, value, points (one row per tick).

        Returns
        -------
        DataFrame
            variable, kind, value, points.
        """
        return pd.DataFrame([{"variable": a.variable, "kind": a.kind, "value": v, "points": p}
                             for a in self.axes for v, p in zip(a.values, a.points)])

    def to_dict(self) -> dict:
        """JSON-able export for a JavaScript calculator: points(v, x) = scale * (beta*x - min_bx);
        lp = total/scale + sum(min_bx) - centre; S(t) = baseline_survival ** exp(lp).

        Returns
        -------
        dict
            Axes, scale, centre, baseline survival, time point, coefficients and reference levels (read back by
            :meth:`from_dict`).
        """
        d = {"model": "cox", "t": self.t, "time_unit": self.time_unit, "coefficients": self.coefficients,
             "centre": self.centre, "baseline_survival": self.baseline_survival, "scale": self.scale,
             "lp_offset": float(sum(a.min_bx for a in self.axes) - self.centre),
             "axes": [asdict(a) for a in self.axes], "reference": {k: str(v) for k, v in self.reference.items()},
             "formula": {"points": "scale * (beta * x - min_bx)", "lp": "total / scale + lp_offset",
                         "survival": "baseline_survival ** exp(lp)"}}
        json.dumps(d)  # guarantees JSON-ability
        return d

    def calculator_spec(self, inputs: list, *, title: str = "Nomogram", risk_threshold: float | None = None,
                        threshold_rule: str = "", n: int | None = None, events: int | None = None) -> dict:
        """The spec the calculators read (format ``hcc-dsfr-nomogram``, see :class:`NomogramCalculator`).

        Parameters
        ----------
        inputs : list of dict
            One input per axis, in axis order: ``name, label, type, axis_label`` and, for a continuous input,
            ``beta`` (per model unit), ``per``, ``min``, ``max``, ``step``, ``default``; otherwise ``levels``,
            ``lp`` (beta per level, reference 0) and ``default``. ``lp_min`` / ``lp_max`` are added from the axes.
        title : str
        risk_threshold : float, optional
        threshold_rule : str
        n, events : int, optional
            Size of the fitted data.

        Returns
        -------
        dict
        """
        variables = []
        for item, ax in zip(inputs, self.axes):
            item = dict(item)
            item["lp_min"] = float(ax.min_bx)
            item["lp_max"] = float(ax.min_bx + max(ax.points) / self.scale)
            variables.append(item)
        return {
            "format": CALCULATOR_FORMAT, "version": 1, "title": title,
            "landmark": float(self.t), "time_unit": self.time_unit,
            "baseline_survival": self.baseline_survival, "centre": self.centre, "scale": self.scale,
            "lp_offset": float(sum(v["lp_min"] for v in variables)),
            "variables": variables,
            "risk_threshold": None if risk_threshold is None else float(risk_threshold),
            "risk_threshold_rule": threshold_rule,
            "n": n, "events": events,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Nomogram":
        """The nomogram from its :meth:`to_dict` export.

        Parameters
        ----------
        d : dict
            As written by :meth:`to_dict`.

        Returns
        -------
        Nomogram
        """
        return cls(axes=[NomogramAxis(**a) for a in d["axes"]], scale=d["scale"], centre=d["centre"],
                   baseline_survival=d["baseline_survival"], t=d["t"], coefficients=d["coefficients"],
                   reference=d.get("reference", {}), time_unit=d.get("time_unit", "months"))


def _axis_bx(a: NomogramAxis) -> list:
    if a.kind == "continuous":
        b = a.beta[a.variable]
        return [b * float(v) for v in a.values]
    return [a.beta.get(f"{a.variable}[{v}]", 0.0) for v in a.values]


# ------------------------------------------------------------------------------------------- calculator export
CALCULATOR_FORMAT = "hcc-dsfr-nomogram"


def _axis_label(label: str) -> str:
    """Variable label without a trailing "per k" (axes and inputs show values in the table's units)."""
    return re.sub(r"(,\s*per\s+[0-9.]+|\s*\(per\s+[0-9.]+[^)]*\))\s*$", "", label).strip() or label


def _calculator_input(term: dict, beta: pd.Series, X: pd.DataFrame) -> tuple[dict, dict, dict]:
    """One calculator input of a fitted term: its spec item, coefficients per table unit, and its rms axis."""
    item = {"name": term["name"], "label": term["label"], "type": term["type"],
            "axis_label": term.get("axis_label") or _axis_label(term["label"])}
    if term["type"] == "continuous":
        x = X[term["name"]].astype(float) * term["per"]  # back to the table's units
        lo, hi = default_axis_range(x)
        b = float(beta[term["name"]])
        per = float(term["per"])
        span = hi - lo
        step = 10 ** math.floor(math.log10(span / 100)) if span > 0 else 1.0
        lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
        default = lo + round((float(np.median(x)) - lo) / step) * step  # on the slider's grid
        item.update(beta=b, per=per, min=float(round(lo, 12)), max=float(round(hi, 12)), step=step,
                    default=float(round(default, 12)))
        return item, {term["name"]: b / per}, {"kind": "continuous", "values": [item["min"], item["max"]]}
    levels = list(term["levels"])
    if term["type"] == "binary":
        lp_levels = [0.0, float(beta[term["name"]])]
        counts = X[term["name"]].value_counts()
        default = levels[int(counts.idxmax())]
    else:
        lp_levels = [0.0] + [float(beta[f"{term['name']}[{lv}]"]) for lv in levels[1:]]
        dummies = X[[f"{term['name']}[{lv}]" for lv in levels[1:]]].to_numpy()
        counts = [int((dummies.sum(1) == 0).sum())] + [int(c) for c in dummies.sum(0)]
        default = levels[int(np.argmax(counts))]
    item.update(levels=levels, lp=lp_levels, default=default)
    coefs = {f"{term['name']}[{lv}]": b for lv, b in zip(levels[1:], lp_levels[1:])}
    return item, coefs, {"kind": "categorical", "values": levels}


class NomogramCalculator:
    """The calculator spec of a nomogram: what ``assets/nomogram.js`` and the ipywidgets nomogram read.

    Built from a :class:`Nomogram` (:meth:`from_cox`); :meth:`predict` runs the arithmetic of ``nomogram.js``:
    points = (beta * x / per - lp_min) * scale, LP = total / scale + lp_offset, RFS = S0 ** exp(LP - centre).

    Parameters
    ----------
    spec : dict
        A spec of format ``hcc-dsfr-nomogram`` (:meth:`to_dict`).
    """

    def __init__(self, spec: dict):
        self.spec = spec

    @classmethod
    def from_cox(cls, model, landmark: float, risk_threshold: float | None = None, threshold_rule: str = "",
                 title: str = "Nomogram") -> "NomogramCalculator":
        """Build from a :class:`~hcc_utils.stats.cox_models.CoxModel` of term specs.

        Continuous axes span the rms ``datadist`` display range of the fitted patients (:func:`default_axis_range`),
        on a slider grid; categorical inputs default to their most frequent level.

        Parameters
        ----------
        model : CoxModel
        landmark : float
            Time of the predicted RFS.
        risk_threshold : float, optional
            Predicted probability of recurrence from which a patient is high risk.
        threshold_rule : str
            How the threshold was chosen (shown by the calculators).
        title : str

        Returns
        -------
        NomogramCalculator

        Raises
        ------
        ValueError
            When every coefficient is zero.
        """
        s0 = model.baseline_survival(landmark)
        items, coefs, axes = [], {}, {}
        for term in model.terms:
            item, c, ax = _calculator_input(term, model.params, model.X)
            items.append(item)
            coefs.update(c)
            axes[term["name"]] = ax
        try:
            nom = Nomogram.from_coefficients(coefs, model.centre, s0, landmark, axes)
        except ValueError as exc:
            raise ValueError(f"nomogram: all coefficients are zero ({exc})") from exc
        return cls(nom.calculator_spec(items, title=title, risk_threshold=risk_threshold,
                                       threshold_rule=threshold_rule, n=model.n, events=model.events))

    @classmethod
    def from_dict(cls, d: dict) -> "NomogramCalculator":
        """Read a spec (:meth:`to_dict`).

        Parameters
        ----------
        d : dict

        Returns
        -------
        NomogramCalculator

        Raises
        ------
        ValueError
            When ``d`` is not a calculator spec.
        """
        if d.get("format") != CALCULATOR_FORMAT:
            raise ValueError(f"not a nomogram export (format != {CALCULATOR_FORMAT!r})")
        return cls(json.loads(json.dumps(d)))

    def to_dict(self) -> dict:
        """A copy of the spec.

        Returns
        -------
        dict
        """
        return json.loads(json.dumps(self.spec))

    def to_json(self, path) -> Path:
        """Write the spec as indented JSON.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.spec, indent=2))
        return path

    @property
    def variables(self) -> list[dict]:
        """The inputs, in model order."""
        return self.spec["variables"]

    def defaults(self) -> dict:
        """Default value of each input.

        Returns
        -------
        dict
        """
        return {v["name"]: v["default"] for v in self.variables}

    def term_lp(self, var: dict, value) -> float:
        """Linear predictor of one input value (uncentred).

        Parameters
        ----------
        var : dict
            An item of :attr:`variables`.
        value : float, str or int
            A number (continuous), a level, or 0/1 (binary).

        Returns
        -------
        float
        """
        if var["type"] == "continuous":
            return var["beta"] * (float(value) / var["per"])
        levels = var["levels"]
        key = value
        if var["type"] == "binary" and not isinstance(value, str):
            key = levels[int(value)]
        key = str(key)
        if key not in levels:
            raise ValueError(f"nomogram: {var['name']} = {value!r} is not one of {levels}")
        return var["lp"][levels.index(key)]

    def points(self, var: dict, value) -> float:
        """Points of one input value.

        Parameters
        ----------
        var : dict
        value : float, str or int

        Returns
        -------
        float
        """
        return (self.term_lp(var, value) - var["lp_min"]) * self.spec["scale"]

    def predict(self, values: dict) -> dict:
        """Points per variable, total points, linear predictor, RFS and ER probability at the landmark, risk group.

        Parameters
        ----------
        values : dict
            Variable name -> number (continuous), level string, or 0/1 (binary).

        Returns
        -------
        dict
            ``points``, ``total_points``, ``lp``, ``rfs``, ``er_prob``, ``risk_group`` (None without a threshold).
        """
        pts = {}
        total = 0.0
        for v in self.variables:
            if v["name"] not in values:
                raise ValueError(f"nomogram: no value for {v['name']!r}")
            p = self.points(v, values[v["name"]])
            pts[v["name"]] = p
            total += p
        lp = total / self.spec["scale"] + self.spec["lp_offset"]
        rfs = self.spec["baseline_survival"] ** math.exp(lp - self.spec["centre"])
        er = 1.0 - rfs
        thr = self.spec.get("risk_threshold")
        group = None if thr is None else ("high" if er >= thr else "low")
        return {"points": pts, "total_points": total, "lp": lp, "rfs": rfs, "er_prob": er, "risk_group": group}

    def predict_frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """:meth:`predict` for each row of an analysis table (binary columns 0/1; NaN rows give NaN).

        Parameters
        ----------
        data : DataFrame
            One column per input name; index = patient id.

        Returns
        -------
        DataFrame
            ``total_points, lp, rfs, er_prob`` by patient id.
        """
        rows = []
        for pid, r in data.iterrows():
            vals = {}
            for v in self.variables:
                x = r[v["name"]]
                vals[v["name"]] = x if v["type"] != "binary" else (np.nan if pd.isna(x) else int(x))
            if any(pd.isna(x) if not isinstance(x, str) else False for x in vals.values()):
                rows.append({"patient_id": pid, "total_points": np.nan, "lp": np.nan, "rfs": np.nan, "er_prob": np.nan})
                continue
            p = self.predict(vals)
            rows.append({"patient_id": pid, "total_points": p["total_points"], "lp": p["lp"], "rfs": p["rfs"],
                         "er_prob": p["er_prob"]})
        return pd.DataFrame(rows).set_index("patient_id")
