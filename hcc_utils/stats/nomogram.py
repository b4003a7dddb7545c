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
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .survival import cox_fit

__all__ = ["NomogramAxis", "Nomogram", "cox_baseline_survival", "default_axis_range"]


def cox_baseline_survival(time, event, lp_centred, t: float) -> float:
    """Baseline survival S0(t) at the mean covariates (lp = 0) with the Efron-type cumulative hazard
    (R ``survfit.coxph`` default after ``ties="efron"``: ``ctype=2``, ``stype=2``).

    Parameters
    ----------
    time, event : array-like
    lp_centred : array-like
        Centred linear predictor of the fitted subjects.
    t : float
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
    """rms ``datadist`` display range: quantiles ``q`` and ``1 - q`` with ``q = 10 / max(n, 200)``."""
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
        """Points of one predictor value (continuous values may lie off the displayed ticks)."""
        a = self._axis(variable)
        if a.kind == "continuous":
            return float(self.scale * (a.beta[variable] * float(value) - a.min_bx))
        key = str(value)
        if key not in a.values:
            raise ValueError(f"{variable}: level {value!r} not among {a.values}")
        return float(self.scale * (a.beta.get(f"{variable}[{key}]", 0.0) - a.min_bx))

    def lp_from_points(self, total):
        """Centred linear predictor for total points."""
        return np.asarray(total, float) / self.scale + sum(a.min_bx for a in self.axes) - self.centre

    def points_from_lp(self, lp):
        return (np.asarray(lp, float) + self.centre - sum(a.min_bx for a in self.axes)) * self.scale

    def survival_from_lp(self, lp):
        return self.baseline_survival ** np.exp(np.asarray(lp, float))

    def points_for_survival(self, surv):
        """Total points giving survival ``surv`` at ``t`` (for the survival axis ticks)."""
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
        """Ticks of the total-points axis with their linear predictor and survival."""
        hi = sum(max(a.points) for a in self.axes)
        pts = np.linspace(0, hi, n_ticks)
        lp = self.lp_from_points(pts)
        return pd.DataFrame({"total_points": pts, "lp": lp, "survival": self.survival_from_lp(lp)})

    def axes_frame(self) -> pd.DataFrame:
        """Long table: variable, kind, value, points (one row per tick)."""
        return pd.DataFrame([{"variable": a.variable, "kind": a.kind, "value": v, "points": p}
                             for a in self.axes for v, p in zip(a.values, a.points)])

    def to_dict(self) -> dict:
        """JSON-able export for a JavaScript calculator: points(v, x) = scale * (beta*x - min_bx);
        lp = total/scale + sum(min_bx) - centre; S(t) = baseline_survival ** exp(lp)."""
        d = {"model": "cox", "t": self.t, "time_unit": self.time_unit, "coefficients": self.coefficients,
             "centre": self.centre, "baseline_survival": self.baseline_survival, "scale": self.scale,
             "lp_offset": float(sum(a.min_bx for a in self.axes) - self.centre),
             "axes": [asdict(a) for a in self.axes], "reference": {k: str(v) for k, v in self.reference.items()},
             "formula": {"points": "scale * (beta * x - min_bx)", "lp": "total / scale + lp_offset",
                         "survival": "baseline_survival ** exp(lp)"}}
        json.dumps(d)  # guarantees JSON-ability
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Nomogram":
        return cls(axes=[NomogramAxis(**a) for a in d["axes"]], scale=d["scale"], centre=d["centre"],
                   baseline_survival=d["baseline_survival"], t=d["t"], coefficients=d["coefficients"],
                   reference=d.get("reference", {}), time_unit=d.get("time_unit", "months"))


def _axis_bx(a: NomogramAxis) -> list:
    if a.kind == "continuous":
        b = a.beta[a.variable]
        return [b * float(v) for v in a.values]
    return [a.beta.get(f"{a.variable}[{v}]", 0.0) for v in a.values]
