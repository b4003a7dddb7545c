"""Seeded, parallel bootstrap shared by the AUC / C-index / calibration helpers.

Replicate ``b`` draws its indices from ``numpy.random.default_rng(SeedSequence(seed).spawn(n_boot)[b])``, so the
replicates -- and every summary of them -- are identical for any ``n_jobs`` (joblib) and any chunking.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["bootstrap_indices", "seeded_bootstrap"]


def bootstrap_indices(n: int, seed_seq, strata: np.ndarray | None = None) -> np.ndarray:
    """Indices of one bootstrap sample (resampling within each stratum when ``strata`` is given).

    Parameters
    ----------
    n : int
        Sample size.
    seed_seq : numpy.random.SeedSequence or int
        Seed of this replicate.
    strata : ndarray, optional
        Stratum of each subject; each stratum is resampled to its own size.

    Returns
    -------
    ndarray
        ``n`` indices drawn with replacement.
    """
    rng = np.random.default_rng(seed_seq)
    if strata is None:
        return rng.integers(0, n, n)
    parts = []
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        parts.append(rng.choice(idx, len(idx)))
    return np.concatenate(parts)


def _run_chunk(fn, n, seeds, strata):
    out = []
    for sd in seeds:
        idx = bootstrap_indices(n, sd, strata)
        try:
            out.append(fn(idx))
        except ValueError:  # degenerate resample (e.g. one class, no events): dropped, counted by the caller
            out.append(None)
    return out


def seeded_bootstrap(fn: Callable[[np.ndarray], object], n: int, n_boot: int = 1000, seed: int = 0,
                     n_jobs: int = 1, strata=None, progress: bool = False, desc: str = "bootstrap") -> list:
    """Evaluate ``fn(indices)`` on ``n_boot`` bootstrap samples of ``range(n)``.

    Parameters
    ----------
    fn : callable
        Receives an index array, returns a statistic (anything picklable).  A ``ValueError`` marks a degenerate
        resample; it is returned as ``None``.
    n : int
        Sample size.
    n_boot : int
    seed : int
    n_jobs : int
        joblib processes (results do not depend on it).
    strata : array-like, optional
        Resample within strata (e.g. the outcome for a stratified AUC bootstrap).
    progress : bool
        Show a tqdm bar over chunks.

    Returns
    -------
    list
        One entry per replicate, in replicate order.
    """
    from joblib import Parallel, delayed

    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    strata = None if strata is None else np.asarray(strata)
    seeds = np.random.SeedSequence(seed).spawn(n_boot)
    n_chunks = max(1, min(n_boot, 8 * max(1, n_jobs if n_jobs > 0 else 8)))
    chunks = [c for c in np.array_split(np.arange(n_boot), n_chunks) if len(c)]
    gen = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_chunk)(fn, n, [seeds[i] for i in c], strata) for c in chunks)
    if progress:
        from tqdm.auto import tqdm

        gen = tqdm(gen, total=len(chunks), desc=desc)
    return [v for chunk in gen for v in chunk]
