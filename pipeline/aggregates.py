"""Histograms of private values that are safe to publish: every bin holds at least `min_per_bin` items.

Imports nothing of `pipeline`; the privacy report (calibration scores) and the fidelity report (corpus
features) both draw their pictures of private data through it.
"""

from __future__ import annotations

import numpy as np

MIN_PRIVATE_PER_BIN = 5


def quantile_edges(values: np.ndarray, min_per_bin: int = MIN_PRIVATE_PER_BIN, max_bins: int = 12) -> np.ndarray | None:
    """Bin edges over the finite `values` such that every bin holds at least `min_per_bin` of them: quantile
    bins, neighbours merged until they do. None when there are fewer than `min_per_bin` finite values."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    values = values[np.isfinite(values)]
    if values.size < min_per_bin:
        return None
    bins = max(1, min(max_bins, values.size // min_per_bin))
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # every value the same: one bin around it
        return np.array([values[0] - 0.5, values[0] + 0.5])
    while edges.size > 2:
        counts = np.histogram(values, bins=edges)[0]
        small = np.flatnonzero(counts < min_per_bin)
        if small.size == 0:
            break
        first = small[0]
        edges = np.delete(edges, first + 1 if first + 1 < edges.size - 1 else first)  # merge with the next bin
    return edges


def min_count_histogram(values, min_per_bin: int = MIN_PRIVATE_PER_BIN, max_bins: int = 12) -> dict | None:
    """{"bin_edges", "counts"} of the finite values with every bin at least `min_per_bin` (None if too few),
    and how many values were not finite (e.g. a trial the detector could not hear)."""
    values = np.asarray(values, dtype=np.float64)
    edges = quantile_edges(values, min_per_bin, max_bins)
    if edges is None:
        return None
    finite = values[np.isfinite(values)]
    return {"bin_edges": [round(float(e), 4) for e in edges], "counts": np.histogram(finite, bins=edges)[0].tolist(),
            "not_finite": int(values.size - finite.size)}
