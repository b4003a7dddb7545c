"""Text forms of statistics for tables, figures and the narrative (one rule for every chapter)."""
from __future__ import annotations

import math

__all__ = ["format_p"]


def format_p(p, digits: int = 3, missing: str = "", prefix: bool = False) -> str:
    """A p value as text: ``0.012``, or ``<0.001`` below ``10 ** -digits``.

    Parameters
    ----------
    p : float or None
        The p value.
    digits : int
        Decimals shown; values below ``10 ** -digits`` are shown as ``<0.001`` (for 3 digits).
    missing : str
        Text for None, NaN or an infinite value.
    prefix : bool
        Prose form for figure annotations: ``p = 0.012`` / ``p < 0.001``.

    Returns
    -------
    str
    """
    if p is None or not math.isfinite(float(p)):
        return missing
    p = float(p)
    small = p < 10 ** -digits
    if prefix:
        return f"p < {10 ** -digits:.{digits}f}" if small else f"p = {p:.{digits}f}"
    return f"<{10 ** -digits:.{digits}f}" if small else f"{p:.{digits}f}"
