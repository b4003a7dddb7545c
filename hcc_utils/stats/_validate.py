"""Input checks shared by the statistics functions (clear errors, never silent coercion)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def _name(x, default):
    return getattr(x, "name", None) or default


def as_float(x, what: str = "score") -> np.ndarray:
    """Return ``x`` as a 1-D float array; raise ``ValueError`` on NaN/inf or non-numeric input.

    Parameters
    ----------
    x : array-like
        Numbers (a pandas Series names itself in error messages).
    what : str
        Name used in error messages when ``x`` has none.

    Returns
    -------
    ndarray
        1-D float array.
    """
    name = _name(x, what)
    arr = np.asarray(x)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {np.shape(x)}")
    if arr.dtype == bool:
        arr = arr.astype(float)
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected numbers, got dtype {np.asarray(x).dtype}") from e
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = _bad_labels(x, bad)
        raise ValueError(f"{name}: {int(bad.sum())} missing or non-finite value(s) (at {idx}); "
                         "remove or impute them before calling")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input")
    return arr


def _bad_labels(x, bad, k=5):
    if isinstance(x, (pd.Series, pd.DataFrame)):
        labels = list(x.index[bad][:k])
    else:
        labels = list(np.flatnonzero(bad)[:k])
    more = "" if bad.sum() <= k else ", ..."
    return ", ".join(map(str, labels)) + more


def as_binary(y, what: str = "y", positive=None, require_both: bool = True) -> np.ndarray:
    """Return a 0/1 int array from 0/1 ints, booleans, or a two-level string outcome.

    Parameters
    ----------
    y : array-like
        Outcome.  0/1 numbers, booleans, or (with ``positive``) any two-level labels.
    positive : object, optional
        The level counted as 1.  Required for non-numeric, non-boolean outcomes.
    require_both : bool
        Raise if only one class is present.

    Returns
    -------
    ndarray
        0/1 int array.
    """
    name = _name(y, what)
    fast = _binary_fast(y, positive)
    if fast is not None:
        if fast.size == 0:
            raise ValueError(f"{name}: empty input")
        if require_both and (fast.min() == fast.max()):
            raise ValueError(f"{name}: only one class present ({int(fast[0])} for all {len(fast)} rows); "
                             "needs both cases and controls")
        return fast
    ser = pd.Series(np.asarray(y, dtype=object) if not isinstance(y, pd.Series) else y.astype(object))
    if ser.isna().any():
        raise ValueError(f"{name}: {int(ser.isna().sum())} missing value(s) (at {_bad_labels(y, ser.isna().to_numpy())})")
    if len(ser) == 0:
        raise ValueError(f"{name}: empty input")
    levels = pd.unique(ser)
    if positive is not None:
        if positive not in set(levels):
            raise ValueError(f"{name}: positive level {positive!r} not found among {sorted(map(str, levels))}")
        if len(levels) > 2:
            raise ValueError(f"{name}: expected two levels, found {len(levels)}: {sorted(map(str, levels))[:10]}")
        out = (ser == positive).to_numpy().astype(int)
    else:
        vals = set()
        for v in levels:
            if isinstance(v, (bool, np.bool_)):
                vals.add(int(v))
            elif isinstance(v, (int, np.integer, float, np.floating)) and float(v) in (0.0, 1.0):
                vals.add(int(v))
            else:
                raise ValueError(f"{name}: expected 0/1 or True/False values, found {v!r}; "
                                 "for a two-level label outcome pass positive=<level>")
        out = ser.map(lambda v: int(v)).to_numpy().astype(int)
    if require_both and len(np.unique(out)) < 2:
        raise ValueError(f"{name}: only one class present ({int(out[0])} for all {len(out)} rows); "
                         "needs both cases and controls")
    return out


def _binary_fast(y, positive):
    """0/1 int array for numeric/boolean input without missing values, else None (slow path handles errors)."""
    if positive is not None:
        return None
    arr = np.asarray(y)
    if arr.ndim != 1:
        return None
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            return None
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.isin(arr, (0.0, 1.0)).all():
            return None
        return arr.astype(np.int64)
    return None


def as_event(event, what: str = "event", positive=None) -> np.ndarray:
    """Event indicator as 0/1 ints; raises if no event at all (all censored).

    Parameters
    ----------
    event : array-like
        Event indicator (0/1, booleans, or two labels with ``positive``).
    what : str
        Name used in error messages.
    positive : object, optional
        The label of an event.

    Returns
    -------
    ndarray
        0/1 int array with at least one event.
    """
    e = as_binary(event, what, positive=positive, require_both=False)
    if e.sum() == 0:
        raise ValueError(f"{_name(event, what)}: all {len(e)} observations are censored (no event)")
    return e


def as_time(time, what: str = "time") -> np.ndarray:
    """Follow-up times as a float array; raises on negative or missing values.

    Parameters
    ----------
    time : array-like
        Follow-up times.
    what : str
        Name used in error messages.

    Returns
    -------
    ndarray
        Float array of non-negative times.
    """
    t = as_float(time, what)
    if (t < 0).any():
        raise ValueError(f"{_name(time, what)}: {int((t < 0).sum())} negative time(s)")
    return t


def same_length(**arrays):
    """Raise ``ValueError`` unless every array has the same length.

    Parameters
    ----------
    **arrays : array-like
        Named arrays that must have one length.

    Returns
    -------
    None
        Raises ``ValueError`` naming the lengths when they differ.
    """
    lens = {k: len(v) for k, v in arrays.items()}
    if len(set(lens.values())) > 1:
        raise ValueError("length mismatch: " + ", ".join(f"{k}={v}" for k, v in lens.items()))
