"""ComBat harmonisation of feature tables across centres, estimated on the development cohort only.

Location/scale ComBat with parametric empirical Bayes (Johnson et al. 2007), as inmoose's ``pycombat_norm`` computes it
(population variances; equal to it to 1e-12, ``tests/reference/combat_inmoose.json``).
:func:`fit_combat` estimates, on the development rows alone, each feature's grand mean, covariate coefficients and
pooled variance, and each development centre's shift and scale. :meth:`ComBat.apply` maps any table onto that
development scale. A centre the fit never saw (here the validation centre) gets its shift and scale estimated from
its own rows' features with the development parameters held fixed: this uses the validation features, never the
outcomes, and never changes the fitted model, the development rows or another centre's result.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def _design(covariates, index, names=None) -> np.ndarray:
    if covariates is None:
        if names:
            raise ValueError(f"this model was fitted with covariates {names}; pass them")
        return np.zeros((len(index), 0))
    cov = pd.DataFrame(covariates).reindex(index)
    if names is not None:
        missing = [c for c in names if c not in cov.columns]
        if missing:
            raise ValueError(f"covariates {missing} are missing")
        cov = cov[names]
    x = cov.to_numpy(dtype=float)
    if not np.isfinite(x).all():
        raise ValueError("covariates must be numeric and complete for every row")
    return x


def _eb(z: np.ndarray, conv: float = 1e-4, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Parametric empirical Bayes shift and scale of one batch from its standardised data z (n x p)."""
    n = z.shape[0]
    g_hat, d_hat = z.mean(0), z.var(0, ddof=0)
    if z.shape[1] < 2 or n < 2:
        return g_hat, d_hat
    g_bar, t2 = g_hat.mean(), g_hat.var(ddof=0)
    m, s2 = d_hat.mean(), d_hat.var(ddof=0)
    if not (t2 > 0 and s2 > 0):  # no spread across features to learn a prior from
        return g_hat, d_hat
    a, b = (2 * s2 + m ** 2) / s2, (m * s2 + m ** 3) / s2
    g, d = g_hat.copy(), d_hat.copy()
    for _ in range(max_iter):
        g_new = (n * t2 * g_hat + d * g_bar) / (n * t2 + d)
        d_new = (b + 0.5 * ((z - g_new) ** 2).sum(0)) / (n / 2.0 + a - 1.0)
        change = max(np.max(np.abs(g_new - g) / np.maximum(np.abs(g), 1e-12)),
                     np.max(np.abs(d_new - d) / np.maximum(np.abs(d), 1e-12)))
        g, d = g_new, d_new
        if change < conv:
            break
    return g, d


@dataclass
class ComBat:
    """A ComBat model fitted on development rows (:func:`fit_combat`).

    Attributes
    ----------
    features : list of str
    covariates : list of str
        Covariate columns (their effect is kept).
    grand_mean, var_pooled : ndarray (p,)
    beta : ndarray (q x p)
        Covariate coefficients.
    batches : dict
        Development batch -> (shift, scale) arrays (p,) on the standardised scale.
    eb : bool
    """

    features: list
    covariates: list
    grand_mean: np.ndarray
    var_pooled: np.ndarray
    beta: np.ndarray
    batches: dict = field(default_factory=dict)
    eb: bool = True

    def _standardise(self, table: pd.DataFrame, covariates) -> tuple[np.ndarray, np.ndarray]:
        missing = [c for c in self.features if c not in table.columns]
        if missing:
            raise KeyError(f"{len(missing)} feature(s) of the model are missing: {missing[:10]}")
        y = table[self.features].to_numpy(dtype=float)
        if not np.isfinite(y).all():
            raise ValueError("features must be finite to harmonise")
        mod = _design(covariates, table.index, self.covariates) @ self.beta
        return (y - self.grand_mean - mod) / np.sqrt(self.var_pooled), mod

    def batch_parameters(self, table: pd.DataFrame, batches, covariates=None) -> dict:
        """Shift and scale of every batch of ``table``: the fitted ones for development batches, estimated from
        ``table``'s rows (features only, development parameters fixed) for the others."""
        z, _ = self._standardise(table, covariates)
        b = pd.Series(np.asarray(batches), index=table.index)
        out = {}
        for lvl in pd.unique(b):
            if lvl in self.batches:
                out[lvl] = self.batches[lvl]
            else:
                rows = (b == lvl).to_numpy()
                if rows.sum() < 2:
                    raise ValueError(f"batch {lvl!r} has {rows.sum()} row(s); at least 2 are needed to estimate it")
                zb = z[rows]
                out[lvl] = _eb(zb) if self.eb else (zb.mean(0), zb.var(0, ddof=0))
        return out

    def apply(self, table: pd.DataFrame, batches, covariates=None, new_batches: str = "estimate") -> pd.DataFrame:
        """Harmonise ``table`` onto the development scale.

        Parameters
        ----------
        table : DataFrame
            Patients x features (the model's features; other columns are returned unchanged).
        batches : array-like
            Batch (centre) of each row.
        covariates : DataFrame, optional
            The fit's covariate columns, indexed like ``table`` (required when the fit had covariates).
        new_batches : {'estimate', 'error'}
            A batch not seen in the fit: estimate its shift and scale from its own rows in ``table`` (features
            only; all of that batch's rows should be passed together), or raise.

        Returns
        -------
        DataFrame
            Same index and columns as ``table``.
        """
        if len(np.asarray(batches)) != len(table):
            raise ValueError(f"{len(np.asarray(batches))} batches for {len(table)} rows")
        unseen = sorted({str(x) for x in pd.unique(np.asarray(batches)) if x not in self.batches})
        if unseen and new_batches == "error":
            raise ValueError(f"batches {unseen} were not in the development data")
        if new_batches not in ("estimate", "error"):
            raise ValueError(f"new_batches must be 'estimate' or 'error', got {new_batches!r}")
        params = self.batch_parameters(table, batches, covariates)
        z, mod = self._standardise(table, covariates)
        b = np.asarray(batches)
        adj = np.empty_like(z)
        for lvl, (g, d) in params.items():
            rows = b == lvl
            adj[rows] = (z[rows] - g) / np.sqrt(d)
        out = table.copy()
        out[self.features] = adj * np.sqrt(self.var_pooled) + self.grand_mean + mod
        return out


def fit_combat(dev_table: pd.DataFrame, dev_batches, covariates: pd.DataFrame | None = None,
               eb: bool = True) -> ComBat:
    """Fit ComBat on the development cohort only.

    Parameters
    ----------
    dev_table : DataFrame
        Development patients x features (finite values).
    dev_batches : array-like
        Centre (scanner) of each development row. A development cohort from one centre is its own reference: its
        rows come back unchanged and only other centres are moved.
    covariates : DataFrame, optional
        Numeric biological covariates indexed like ``dev_table`` whose effect is kept (never the outcome).
    eb : bool
        Empirical Bayes shrinkage of the batch parameters across features.

    Returns
    -------
    ComBat
        ``.apply(table, batches, covariates)`` harmonises any cohort without refitting.
    """
    y = dev_table.to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise ValueError("features must be finite to harmonise")
    b = np.asarray(dev_batches)
    if len(b) != len(y):
        raise ValueError(f"{len(b)} batches for {len(y)} rows")
    levels = list(pd.unique(b))
    small = [lvl for lvl in levels if (b == lvl).sum() < 2]
    if small:
        raise ValueError(f"batches {small} have fewer than 2 development rows")
    x = _design(covariates, dev_table.index)
    onehot = (b[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(float)
    design = np.hstack([onehot, x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    n_b = onehot.sum(0)
    grand = (n_b / len(y)) @ coef[:len(levels)]
    beta = coef[len(levels):]
    var_pooled = ((y - design @ coef) ** 2).mean(0)
    constant = var_pooled <= 0
    if constant.any():
        bad = list(dev_table.columns[constant][:10])
        raise ValueError(f"{int(constant.sum())} feature(s) do not vary within the development centres: {bad}")
    model = ComBat(list(dev_table.columns), [] if covariates is None else list(pd.DataFrame(covariates).columns),
                   grand, var_pooled, beta, {}, eb)
    z, _ = model._standardise(dev_table, covariates)
    p = y.shape[1]
    for lvl in levels:
        if len(levels) == 1:
            model.batches[lvl] = (np.zeros(p), np.ones(p))
            continue
        zb = z[b == lvl]
        model.batches[lvl] = _eb(zb) if eb else (zb.mean(0), zb.var(0, ddof=0))
    return model
