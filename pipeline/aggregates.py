"""Histograms of private values that are safe to publish: every bin holds at least `min_per_bin` items, the
two end bins are open (their outer edges, the smallest and largest private values, are not published) and
inner edges are quantiles rounded to 3 significant digits, so no edge is one item's value.

Imports nothing of `pipeline`; the privacy report (calibration scores) and the fidelity report (corpus
features) both draw their pictures of private data through it. Published edges: [None, e1, ..., ek, None].
"""

from __future__ import annotations

import numpy as np

MIN_PRIVATE_PER_BIN = 5


def _rounded(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def bin_counts(values: np.ndarray, inner_edges) -> np.ndarray:
    """Counts over the open-ended bins (-inf, e1), [e1, e2), ..., [ek, inf) of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(np.asarray(inner_edges, dtype=np.float64), values, side="right"),
                       minlength=len(inner_edges) + 1)


def quantile_edges(values, min_per_bin: int = MIN_PRIVATE_PER_BIN, max_bins: int = 12) -> list[float] | None:
    """Inner bin edges over the finite `values` such that every open-ended bin holds at least `min_per_bin`:
    rounded quantiles, an edge removed (its bins merged) until they do. [] is one bin of everything; None
    when there are fewer than `min_per_bin` finite values."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    values = values[np.isfinite(values)]
    if values.size < min_per_bin:
        return None
    bins = max(1, min(max_bins, values.size // min_per_bin))
    inner = sorted({_rounded(q) for q in np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1]})
    while inner:
        counts = bin_counts(values, inner)
        small = np.flatnonzero(counts < min_per_bin)
        if small.size == 0:
            break
        first = int(small[0])
        inner.pop(min(first, len(inner) - 1))  # merge the bin with its right neighbour (the last: its left)
    return inner


def published_edges(inner: list[float]) -> list[float | None]:
    """Edges as reports publish them: open ends as None."""
    return [None, *inner, None]


def min_count_histogram(values, min_per_bin: int = MIN_PRIVATE_PER_BIN, max_bins: int = 12) -> dict | None:
    """{"bin_edges" (open ends None), "counts", "not_finite"} of private values, every bin at least
    `min_per_bin` (None if too few finite values); "not_finite" counts e.g. trials the detector could not hear."""
    values = np.asarray(values, dtype=np.float64)
    inner = quantile_edges(values, min_per_bin, max_bins)
    if inner is None:
        return None
    return {"bin_edges": published_edges(inner), "counts": bin_counts(values, inner).tolist(),
            "not_finite": int(values.size - np.isfinite(values).sum())}
