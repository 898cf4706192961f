"""Does the release keep the character of the private audio? Aggregate comparisons on the pipeline's features.

Measures (release vs the private corpus: the `source:` corpus where a run has one, else the reference set):

- shape similarity per column, as SDMetrics' quality report defines it: 1 - the two-sample Kolmogorov-Smirnov
  statistic for numbers, 1 - the total variation distance for categories;
- pair trends: correlation similarity, 1 - |r_release - r_corpus| / 2 (Pearson), averaged over column pairs;
- a Fréchet distance between Gaussian fits of standardised feature vectors (standardised with the corpus's
  mean and spread), with a bootstrap 95% interval and fadtk's sample-size-free extrapolation (the distance at
  several subsample sizes, fitted against 1/n: the intercept and the fit's R²).

The vectors come from an embedding: `features` (the headline feature columns below, no download) by default,
or a user's function `module:callable` taking (mono float32 audio, sample rate) and returning a 1-D vector,
e.g. a learned audio embedding whose weights are on the user's disk.

Only aggregates of private data leave: no per-clip corpus value; a histogram drawn from private items has at
least `MIN_PRIVATE_PER_BIN` of them in every bin (bins are corpus quantiles, merged until they do). A figure
that needs more data than there is says so (`"insufficient": reason`) instead of printing a number.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
from scipy import linalg, stats

from pipeline.aggregates import MIN_PRIVATE_PER_BIN, bin_counts, published_edges, quantile_edges

MIN_FOR_DISTANCE = 20  # items per side for a Fréchet distance, its interval and its extrapolation
BOOTSTRAP_ROUNDS = 200
HEADLINE_FEATURES = (  # the `features` embedding: level, spectrum shape, timbre, rhythm (8 dimensions)
    "rms_dbfs", "zero_crossing_rate", "spectral_centroid_hz_mean", "spectral_bandwidth_hz_mean",
    "spectral_flatness_mean", "mfcc_01_mean", "mfcc_02_mean", "onset_rate_per_s",
)


def shape_similarity_numeric(release: np.ndarray, corpus: np.ndarray) -> float:
    """1 - KS statistic of the two samples (1: the same distribution of values)."""
    return float(1.0 - stats.ks_2samp(release, corpus).statistic)


def shape_similarity_categorical(release: list, corpus: list) -> float:
    """1 - total variation distance between the category frequencies."""
    categories = set(release) | set(corpus)
    p = {c: release.count(c) / len(release) for c in categories}
    q = {c: corpus.count(c) / len(corpus) for c in categories}
    return float(1.0 - 0.5 * sum(abs(p[c] - q[c]) for c in categories))


def correlation_similarity(release: np.ndarray, corpus: np.ndarray) -> float | None:
    """1 - |r_release - r_corpus| / 2 for one column pair ((n, 2) arrays); None where a column is constant."""
    if min(release.std(axis=0).min(), corpus.std(axis=0).min()) == 0:
        return None
    r_release = np.corrcoef(release, rowvar=False)[0, 1]
    r_corpus = np.corrcoef(corpus, rowvar=False)[0, 1]
    return float(1.0 - abs(r_release - r_corpus) / 2)


def standardise(release: np.ndarray, corpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in the corpus's units: minus its mean, over its spread (a constant column: spread 1)."""
    mean = corpus.mean(axis=0)
    spread = corpus.std(axis=0)
    spread[spread == 0] = 1.0
    return (release - mean) / spread, (corpus - mean) / spread


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of (n, d) and (m, d): |mu_x - mu_y|² + Tr(Sx + Sy - 2 (Sx Sy)^½)."""
    mu = x.mean(axis=0) - y.mean(axis=0)
    sx = np.atleast_2d(np.cov(x, rowvar=False))
    sy = np.atleast_2d(np.cov(y, rowvar=False))
    root, _ = linalg.sqrtm(sx @ sy, disp=False)
    root = np.real(root)
    return float(max(0.0, mu @ mu + np.trace(sx + sy - 2 * root)))


def bootstrap_interval(x: np.ndarray, y: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> list[float]:
    """95% percentile interval of the Fréchet distance over resamples of both sets: the spread of the
    estimate at these sample sizes. The estimate is biased upwards at small n (duplicates in a resample bias it
    further), so the interval need not contain it; the extrapolated figure removes the size effect."""
    rng = np.random.default_rng(seed)
    values = [frechet_distance(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
              for _ in range(rounds)]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def extrapolated_distance(x: np.ndarray, y: np.ndarray, points: int = 5, draws: int = 8, seed: int = 0) -> dict:
    """fadtk's sample-size-free figure: the distance at `points` release sizes from half to all of x (mean of
    `draws` subsamples each), fitted as d(n) = d_inf + k / n; returns d_inf (the intercept) and the fit's R²."""
    rng = np.random.default_rng(seed)
    sizes = np.unique(np.linspace(max(2, len(x) // 2), len(x), points).astype(int))
    values = [np.mean([frechet_distance(x[rng.choice(len(x), n, replace=False)], y) for _ in range(draws)])
              for n in sizes]
    fit = stats.linregress(1.0 / sizes, values)
    return {"intercept": float(fit.intercept), "r2": float(fit.rvalue ** 2), "sizes": sizes.tolist()}


def private_histogram(release: np.ndarray, corpus: np.ndarray, max_bins: int = 10) -> dict | None:
    """Counts of both sets over open-ended bins that each hold at least MIN_PRIVATE_PER_BIN corpus items
    (pipeline.aggregates: rounded corpus quantiles, no published edge is one item's value). None when the
    corpus has fewer than 2 * MIN_PRIVATE_PER_BIN finite items."""
    corpus = corpus[np.isfinite(corpus)]
    if corpus.size < 2 * MIN_PRIVATE_PER_BIN:
        return None
    inner = quantile_edges(corpus, MIN_PRIVATE_PER_BIN, max_bins)
    return {"bin_edges": published_edges(inner), "corpus": bin_counts(corpus, inner).tolist(),
            "release": bin_counts(release, inner).tolist()}


def load_embedding(spec: str) -> Callable | None:
    """None for the `features` embedding; else the user's `module:callable`."""
    if spec == "features":
        return None
    from pipeline.errors import BadInput

    module, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise BadInput(f"export.fidelity_embedding {spec!r}: cannot load it ({exc}); give `features` or "
                       "`module:function` importable by the exporter (its folder on PYTHONPATH)") from None
    if not callable(function):
        raise BadInput(f"export.fidelity_embedding {spec!r}: {name} is not a function of (audio, sample rate)")
    return function


def column_values(rows: list[dict], column: str) -> np.ndarray:
    """The finite values of one numeric column (missing and non-finite ones left out)."""
    values = np.array([row[column] for row in rows if row.get(column) is not None], dtype=np.float64)
    return values[np.isfinite(values)]


def feature_vectors(rows: list[dict], columns=HEADLINE_FEATURES) -> np.ndarray:
    """(n, d) headline features of rows with every one of them finite (others are left out)."""
    table = np.array([[row.get(c) if row.get(c) is not None else np.nan for c in columns] for row in rows],
                     dtype=np.float64).reshape(len(rows), len(columns))
    return table[np.isfinite(table).all(axis=1)]


def distance_figures(release: np.ndarray, corpus: np.ndarray, seed: int = 0) -> dict:
    """Fréchet distance, its bootstrap interval and its extrapolation, or why they are not shown."""
    need = max(MIN_FOR_DISTANCE, 2 * release.shape[1] if release.ndim == 2 else MIN_FOR_DISTANCE)
    sizes = {"release_items": int(len(release)), "corpus_items": int(len(corpus)), "dimensions": int(release.shape[1])}
    if min(len(release), len(corpus)) < need:
        return {**sizes, "insufficient": f"needs at least {need} items on each side (twice the {release.shape[1]} "
                                         "dimensions, and no fewer than 20) for a distance, its interval and its "
                                         "extrapolation to mean anything"}
    x, y = standardise(release, corpus)
    return {**sizes, "frechet_distance": frechet_distance(x, y), "bootstrap_ci95": bootstrap_interval(x, y, seed=seed),
            "extrapolated": extrapolated_distance(x, y, seed=seed)}


def compare(release_rows: list[dict], corpus_rows: list[dict], numeric_columns: list[str],
            category_columns: list[str] = (), seed: int = 0, vectors: tuple | None = None) -> dict:
    """Column shapes, pair trends and the feature-vector distance of one release group against the corpus."""
    shapes = {}
    for column in numeric_columns:
        r, c = column_values(release_rows, column), column_values(corpus_rows, column)
        if min(r.size, c.size) >= 2:
            shapes[column] = round(shape_similarity_numeric(r, c), 4)
    for column in category_columns:
        r = [row[column] for row in release_rows if row.get(column) is not None]
        c = [row[column] for row in corpus_rows if row.get(column) is not None]
        if r and c:
            shapes[column] = round(shape_similarity_categorical(r, c), 4)
    pairs = []
    for i, a in enumerate(HEADLINE_FEATURES):
        for b in HEADLINE_FEATURES[i + 1:]:
            score = correlation_similarity(feature_vectors(release_rows, (a, b)), feature_vectors(corpus_rows, (a, b)))
            if score is not None:
                pairs.append(score)
    release_vectors, corpus_vectors = vectors or (feature_vectors(release_rows), feature_vectors(corpus_rows))
    distance = distance_figures(np.asarray(release_vectors, dtype=np.float64),
                                np.asarray(corpus_vectors, dtype=np.float64), seed)
    return {
        "items": {"release": len(release_rows), "corpus": len(corpus_rows)},
        "column_shapes": {"mean": round(float(np.mean(list(shapes.values()))), 4) if shapes else None,
                          "by_column": shapes},
        "column_pair_trends": {"mean": round(float(np.mean(pairs)), 4) if pairs else None, "pairs": len(pairs)},
        "frechet": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in distance.items()},
    }


def fidelity_report(release_rows: list[dict], corpus_rows: list[dict], numeric_columns: list[str], *,
                    corpus_name: str, embedding: str = "features", seed: int = 0,
                    vectors: tuple | None = None) -> dict:
    """The release against the corpus, overall and per split and genre of the release where the corpus has
    them too; per-feature histograms (private bins of >= MIN_PRIVATE_PER_BIN) of the most and least similar.
    vectors: (release, corpus) embeddings of a user's `embedding` for the overall distance (default: features)."""
    overall = compare(release_rows, corpus_rows, numeric_columns, seed=seed, vectors=vectors)
    groups = {}
    for key in ("split", "genre"):
        if all(row.get(key) is not None for row in corpus_rows) and corpus_rows:
            for value in sorted({row[key] for row in release_rows}):
                mine = [row for row in release_rows if row[key] == value]
                theirs = [row for row in corpus_rows if row[key] == value]
                groups[f"{key}={value}"] = compare(mine, theirs, numeric_columns, seed=seed) if theirs else None
    varying = {column for column in numeric_columns
               if len({row.get(column) for row in corpus_rows if row.get(column) is not None}) > 1}
    ranked = sorted(((c, v) for c, v in overall["column_shapes"]["by_column"].items() if c in varying),
                    key=lambda kv: kv[1])  # pictures only of columns whose corpus values vary
    shown = dict(ranked[:3] + ranked[-3:]) if len(ranked) > 6 else dict(ranked)
    histograms = {}
    for column in shown:
        histograms[column] = private_histogram(column_values(release_rows, column), column_values(corpus_rows, column))
    return {
        "corpus": corpus_name,
        "embedding": "features: " + ", ".join(HEADLINE_FEATURES) if embedding == "features" else embedding,
        "definitions": {
            "column_shape": "1 - Kolmogorov-Smirnov statistic (numbers) or 1 - total variation distance "
                            "(categories), as SDMetrics' quality report",
            "column_pair_trend": "1 - |Pearson r (release) - Pearson r (corpus)| / 2 over headline feature pairs",
            "frechet_distance": "between Gaussian fits of feature vectors standardised by the corpus; bootstrap "
                                "95% interval; extrapolated: intercept of d(n) = d_inf + k/n (fadtk)",
            "private_bins": f"every histogram bin holds at least {MIN_PRIVATE_PER_BIN} corpus items",
        },
        "overall": overall,
        "groups": groups or "the corpus has no splits or genres: the release is compared as a whole",
        "histograms": {k: v for k, v in histograms.items() if v is not None},
        "similarity_by_column": shown,
    }
