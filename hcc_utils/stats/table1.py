"""Table 1: descriptive cells and between-group tests as the paper specifies.

Student's t (normal), Mann-Whitney U with continuity correction (skewed), Pearson chi-square without Yates'
correction, or Fisher's exact test for R x C tables when an expected count is below 5 (categorical); ANOVA and
Kruskal-Wallis for more than two groups. The library choices are in ``book/method.md`` ("The statistics library").
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import gammaln

__all__ = ["table_one", "fisher_exact_rxc", "chi2_or_fisher"]


def _log_table_prob_const(rows, cols, n):
    return gammaln(np.asarray(rows) + 1).sum() + gammaln(np.asarray(cols) + 1).sum() - gammaln(n + 1)


def _compositions(total, caps):
    """All vectors x with sum(x) == total and 0 <= x <= caps (numpy array, one row per vector)."""
    caps = list(caps)
    if len(caps) == 1:
        return np.array([[total]]) if total <= caps[0] else np.zeros((0, 1), dtype=int)
    out = []
    rest_cap = sum(caps[1:])
    for x0 in range(max(0, total - rest_cap), min(caps[0], total) + 1):
        sub = _compositions(total - x0, caps[1:])
        if len(sub):
            out.append(np.column_stack([np.full(len(sub), x0), sub]))
    return np.vstack(out) if out else np.zeros((0, len(caps)), dtype=int)


def fisher_exact_rxc(table, max_states: int = 20_000_000) -> float:
    """Two-sided Fisher exact test for an R x C contingency table (exact enumeration, as R ``fisher.test``).

    Parameters
    ----------
    table : array-like of non-negative ints, shape (R, C)
    max_states : int
        Guard on the number of partial tables held in memory.

    Returns
    -------
    float
        p-value: total probability of tables with probability <= observed * (1 + 1e-7).
    """
    tab = np.asarray(table)
    if tab.ndim != 2 or (tab < 0).any() or not np.allclose(tab, np.round(tab)):
        raise ValueError("table must be a 2-D array of non-negative counts")
    tab = tab.astype(int)
    tab = tab[tab.sum(1) > 0][:, tab.sum(0) > 0]
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        return 1.0
    if tab.shape[0] > tab.shape[1]:
        tab = tab.T
    rows, cols = tab.sum(1), tab.sum(0)
    n = int(tab.sum())
    const = _log_table_prob_const(rows, cols, n)
    lp_obs = const - gammaln(tab + 1).sum()
    # breadth-first over columns: states = (remaining row margins, partial sum of -log cell!)
    rem = rows[None, :].copy()
    part = np.zeros(1)
    order = np.argsort(cols)[::-1]  # big columns first keeps the last (determined) column cheap
    for j in order[:-1]:
        cj = int(cols[j])
        new_rem, new_part = [], []
        # group states by remaining margins so compositions are built once per distinct margin vector
        keys, inv = np.unique(rem, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        for k, key in enumerate(keys):
            comp = _compositions(cj, key)
            if not len(comp):
                continue
            sel = np.flatnonzero(inv == k)
            lc = -gammaln(comp + 1).sum(1)
            new_rem.append(np.repeat((key - comp)[None, :, :], len(sel), 0).reshape(-1, len(key)))
            new_part.append((part[sel][:, None] + lc[None, :]).reshape(-1))
        rem = np.vstack(new_rem)
        part = np.concatenate(new_part)
        if len(part) > max_states:
            raise ValueError(f"Fisher exact test: table {tab.tolist()} too large to enumerate; "
                             "use the chi-square test or merge sparse levels")
    # last column takes what remains
    lp = const + part - gammaln(rem + 1).sum(1)
    keep = lp <= lp_obs + np.log1p(1e-7)
    p = float(np.exp(lp[keep]).sum())
    return min(1.0, p)


def chi2_or_fisher(table) -> tuple[float, str, float]:
    """Pearson chi-square (no continuity correction), or Fisher's exact test when an expected count is < 5.

    Parameters
    ----------
    table : array-like
        R x C contingency table of counts.

    Returns
    -------
    (p, test, statistic) : the statistic is NaN for Fisher.
    """
    tab = np.asarray(table, dtype=float)
    tab = tab[tab.sum(1) > 0][:, tab.sum(0) > 0]
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        return float("nan"), "none (single level)", float("nan")
    expected = np.outer(tab.sum(1), tab.sum(0)) / tab.sum()
    if (expected < 5).any():
        return fisher_exact_rxc(tab), "Fisher's exact", float("nan")
    chi2, p, _, _ = sps.chi2_contingency(tab, correction=False)
    return float(p), "Pearson chi-square", float(chi2)


def _fmt(x, digits):
    return f"{x:.{digits}f}"


def table_one(df: pd.DataFrame, group: str, normal=(), skewed=(), categorical=(), digits: int = 1,
              p_digits: int = 3, labels: dict | None = None) -> pd.DataFrame:
    """Table 1 with formatted cells and the test used for each variable.

    Parameters
    ----------
    df : DataFrame
    group : str
        Column with the groups (e.g. ``cohort``); missing groups raise.
    normal : list of str
        Reported as mean (SD), tested with Student's t (ANOVA for > 2 groups).
    skewed : list of str
        Reported as median (IQR: Q1-Q3, R's type-7 quantiles), Mann-Whitney U with normal approximation and
        continuity correction (Kruskal-Wallis for > 2 groups).
    categorical : list of str
        One row per level, n (%) of the non-missing; Pearson chi-square without correction, Fisher's exact (R x C)
        when an expected count is < 5.
    digits, p_digits : int
        Rounding of the formatted cells and p values.
    labels : dict, optional
        Display names per variable.

    Returns
    -------
    DataFrame
        columns ``variable, level, <one column per group>, Overall, missing, p, p_formatted, test, statistic``.
        ``p`` is on the first row of each variable (NaN on the level rows of categorical variables).
    """
    labels = labels or {}
    if group not in df.columns:
        raise ValueError(f"group column {group!r} not found")
    if df[group].isna().any():
        raise ValueError(f"group column {group!r}: {int(df[group].isna().sum())} missing value(s) "
                         f"(rows {list(df.index[df[group].isna()][:5])})")
    seen = set()
    for v in [*normal, *skewed, *categorical]:
        if v not in df.columns:
            raise ValueError(f"column {v!r} not found")
        if v in seen:
            raise ValueError(f"column {v!r} listed twice")
        seen.add(v)
    levels = list(df[group].cat.categories) if isinstance(df[group].dtype, pd.CategoricalDtype) else sorted(
        df[group].unique(), key=str)
    if len(levels) < 2:
        raise ValueError(f"group column {group!r} has a single level")
    gnames = [str(g) for g in levels]
    rows = []

    def base(v, level=""):
        return {"variable": labels.get(v, v), "level": level}

    def pfmt(p):
        if not np.isfinite(p):
            return ""
        return f"<{10 ** -p_digits:.{p_digits}f}" if p < 10 ** -p_digits else f"{p:.{p_digits}f}"

    for v in normal:
        x = pd.to_numeric(df[v], errors="raise")
        parts = [x[df[group] == g].dropna().to_numpy() for g in levels]
        if any(len(p) < 2 for p in parts):
            raise ValueError(f"column {v!r}: fewer than 2 values in a group")
        if len(levels) == 2:
            stat, p = sps.ttest_ind(parts[0], parts[1], equal_var=True)
            test = "Student's t"
        else:
            stat, p = sps.f_oneway(*parts)
            test = "one-way ANOVA"
        r = base(v)
        for g, a in zip(gnames, parts):
            r[g] = f"{_fmt(a.mean(), digits)} ({_fmt(a.std(ddof=1), digits)})"
        a = x.dropna().to_numpy()
        r["Overall"] = f"{_fmt(a.mean(), digits)} ({_fmt(a.std(ddof=1), digits)})"
        r.update(missing=int(x.isna().sum()), p=float(p), p_formatted=pfmt(p), test=test, statistic=float(stat))
        rows.append(r)
    for v in skewed:
        x = pd.to_numeric(df[v], errors="raise")
        parts = [x[df[group] == g].dropna().to_numpy() for g in levels]
        if any(len(p) < 1 for p in parts):
            raise ValueError(f"column {v!r}: a group has no values")
        if len(levels) == 2:
            stat, p = sps.mannwhitneyu(parts[0], parts[1], use_continuity=True, alternative="two-sided",
                                       method="asymptotic")
            test = "Mann-Whitney U"
        else:
            stat, p = sps.kruskal(*parts)
            test = "Kruskal-Wallis"
        r = base(v)

        def med(a):
            q1, m, q3 = np.quantile(a, [0.25, 0.5, 0.75])
            return f"{_fmt(m, digits)} ({_fmt(q1, digits)}-{_fmt(q3, digits)})"

        for g, a in zip(gnames, parts):
            r[g] = med(a)
        r["Overall"] = med(x.dropna().to_numpy())
        r.update(missing=int(x.isna().sum()), p=float(p), p_formatted=pfmt(p), test=test, statistic=float(stat))
        rows.append(r)
    for v in categorical:
        x = df[v]
        ok = x.notna()
        lv = list(x.cat.categories) if isinstance(x.dtype, pd.CategoricalDtype) else sorted(x[ok].unique(), key=str)
        tab = np.array([[int(((x == level) & (df[group] == g)).sum()) for g in levels] for level in lv])
        p, test, stat = chi2_or_fisher(tab)
        head = base(v)
        head.update({g: "" for g in gnames}, Overall="", missing=int((~ok).sum()), p=p, p_formatted=pfmt(p),
                    test=test, statistic=stat)
        rows.append(head)
        colsum = tab.sum(0)
        for i, level in enumerate(lv):
            r = {"variable": labels.get(v, v), "level": str(level)}
            for k, g in enumerate(gnames):
                r[g] = f"{tab[i, k]} ({100 * tab[i, k] / colsum[k]:.{digits}f}%)" if colsum[k] else "0"
            tot = tab[i].sum()
            r["Overall"] = f"{tot} ({100 * tot / tab.sum():.{digits}f}%)"
            r.update(missing=np.nan, p=np.nan, p_formatted="", test="", statistic=np.nan)
            rows.append(r)
    out = pd.DataFrame(rows, columns=["variable", "level", *gnames, "Overall", "missing", "p", "p_formatted",
                                      "test", "statistic"])
    out.attrs["n"] = {g: int((df[group] == lvl).sum()) for g, lvl in zip(gnames, levels)}
    return out
