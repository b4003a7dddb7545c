"""Files every stage writes or checks: results JSON (one NaN rule), figures, content hashes. Imports no project module."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

__all__ = ["to_json_value", "json_text", "write_json", "file_sha256", "save_figure"]


def to_json_value(o: Any, fallback=None) -> Any:
    """``o`` with numpy scalars and arrays as Python values, paths as text, and NaN/inf as None (valid JSON).

    Parameters
    ----------
    o : object
        Nested dicts, lists, tuples, numbers, strings, numpy values, paths.
    fallback : callable, optional
        Applied to any other value (e.g. ``str``); by default such a value raises.

    Returns
    -------
    object
        The same structure, JSON-able.

    Raises
    ------
    TypeError
        On a value JSON cannot hold.
    """
    if isinstance(o, dict):
        return {k: to_json_value(v, fallback) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_json_value(v, fallback) for v in o]
    if isinstance(o, (str, bool, int)) or o is None:
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Path):
        return str(o)
    item = getattr(o, "item", None)
    if callable(item) and getattr(o, "ndim", None) == 0:  # a numpy scalar
        return to_json_value(item(), fallback)
    tolist = getattr(o, "tolist", None)
    if callable(tolist):  # a numpy array
        return to_json_value(tolist(), fallback)
    if fallback is not None:
        return fallback(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_text(obj: Any, indent: int | None = 2, fallback=None) -> str:
    """JSON text of ``obj`` under the rule of :func:`to_json_value`.

    Parameters
    ----------
    obj : object
    indent : int or None
    fallback : callable, optional
        See :func:`to_json_value`.

    Returns
    -------
    str
    """
    return json.dumps(to_json_value(obj, fallback), indent=indent)


def write_json(obj: Any, path: str | Path, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (parents created; NaN and inf become null).

    Parameters
    ----------
    obj : object
    path : str or Path
    indent : int or None

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(obj, indent=indent))
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str
        Hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_figure(fig, path: Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Save a figure as PNG and SVG beside each other.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        Without or with any suffix (the formats replace it).
    formats : sequence of str
    dpi : int

    Returns
    -------
    list of Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = path.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        out.append(p)
    return out
