"""The fidelity measures against cases whose answer is known, and the privacy of the pictures drawn from them."""

import numpy as np
import pytest

from pipeline.aggregates import MIN_PRIVATE_PER_BIN, min_count_histogram, quantile_edges
from pipeline.export.fidelity import (
    HEADLINE_FEATURES, compare, correlation_similarity, distance_figures, extrapolated_distance, fidelity_report,
    frechet_distance, private_histogram, shape_similarity_categorical, shape_similarity_numeric, standardise,
)


def test_identical_sets_are_fully_similar_at_distance_zero():
    x = np.random.default_rng(0).normal(size=(300, 4))
    assert shape_similarity_numeric(x[:, 0], x[:, 0]) == 1.0
    assert shape_similarity_categorical(["a", "b", "b"], ["a", "b", "b"]) == 1.0
    assert correlation_similarity(x[:, :2], x[:, :2]) == pytest.approx(1.0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_shifted_gaussians_give_the_analytic_frechet_distance():
    rng = np.random.default_rng(1)
    d, shift, scale = 3, np.array([1.0, -2.0, 0.5]), 2.0
    x = rng.normal(size=(40_000, d))
    y = rng.normal(size=(40_000, d)) * scale + shift
    # N(0, I) vs N(m, s² I): |m|² + d (1 + s² - 2 s)
    analytic = shift @ shift + d * (1 + scale ** 2 - 2 * scale)
    assert frechet_distance(x, y) == pytest.approx(analytic, rel=0.05)


def test_known_kolmogorov_smirnov_and_total_variation_values():
    # disjoint samples: KS statistic 1, similarity 0; half the mass shifted: KS 0.5
    assert shape_similarity_numeric(np.arange(10.0), np.arange(10.0) + 100) == pytest.approx(0.0)
    assert shape_similarity_numeric(np.array([0.0, 0, 1, 1]), np.array([0.0, 0, 0, 0])) == pytest.approx(0.5)
    # frequencies (1/2, 1/2) vs (1/4, 3/4): TVD 1/4
    assert shape_similarity_categorical(["a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.75)
    # perfectly correlated vs perfectly anti-correlated pairs: similarity 0
    t = np.linspace(0, 1, 50)
    assert correlation_similarity(np.c_[t, t], np.c_[t, -t]) == pytest.approx(0.0)


def test_standardisation_uses_the_corpus_units():
    rng = np.random.default_rng(2)
    corpus = rng.normal(5.0, 3.0, size=(500, 2))
    corpus[:, 1] = 7.0  # a constant column keeps spread 1 instead of dividing by zero
    release = corpus + 3.0
    r, c = standardise(release, corpus)
    assert np.allclose(c[:, 0].mean(), 0, atol=1e-9) and np.allclose(c[:, 0].std(), 1)
    assert np.allclose(r[:, 0] - c[:, 0], 3.0 / corpus[:, 0].std()) and np.allclose(r[:, 1] - c[:, 1], 3.0)


def test_extrapolation_recovers_the_large_sample_distance():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(400, 2)), rng.normal(size=(4000, 2)) + [1.0, 0.0]
    figure = extrapolated_distance(x, y, points=5, draws=6)
    assert figure["intercept"] == pytest.approx(1.0, abs=0.15) and 0 <= figure["r2"] <= 1
    assert figure["sizes"][0] == 200 and figure["sizes"][-1] == 400


def test_too_small_a_sample_is_said_not_printed():
    rng = np.random.default_rng(4)
    small = distance_figures(rng.normal(size=(7, 8)), rng.normal(size=(48, 8)))
    assert "frechet_distance" not in small and "needs at least 20 items" in small["insufficient"]
    enough = distance_figures(rng.normal(size=(30, 8)), rng.normal(size=(48, 8)))
    larger = distance_figures(rng.normal(size=(300, 8)), rng.normal(size=(480, 8)))
    low, high = enough["bootstrap_ci95"]
    assert 0 < low < high and "insufficient" not in enough
    assert larger["bootstrap_ci95"][1] - larger["bootstrap_ci95"][0] < (high - low) / 2  # narrows with n
    assert larger["frechet_distance"] < enough["frechet_distance"]  # the small-sample bias shrinks too


@pytest.mark.parametrize("n", [5, 9, 23, 61, 200])
def test_every_private_histogram_bin_holds_at_least_five_items(n):
    values = np.random.default_rng(n).gamma(1.0, size=n)
    values[: n // 3] = 0.25  # ties pile into one quantile
    histogram = min_count_histogram(values)
    assert histogram is not None and min(histogram["counts"]) >= MIN_PRIVATE_PER_BIN
    assert sum(histogram["counts"]) == n
    both = private_histogram(np.random.default_rng(0).normal(size=40), values)
    if n < 2 * MIN_PRIVATE_PER_BIN:
        assert both is None
    else:
        assert min(both["corpus"]) >= MIN_PRIVATE_PER_BIN and sum(both["release"]) == 40  # ends are open


def test_fewer_than_five_private_items_draw_no_histogram():
    assert quantile_edges(np.arange(4.0)) is None and min_count_histogram([1.0, 2.0, np.inf]) is None
    assert min_count_histogram([1.0] * 5 + [-np.inf] * 2) == {"bin_edges": [None, None], "counts": [5], "not_finite": 2}


def test_no_published_edge_is_one_private_value():
    values = np.random.default_rng(8).normal(size=97)
    histogram = min_count_histogram(values)
    edges = histogram["bin_edges"]
    assert edges[0] is None and edges[-1] is None  # the smallest and largest values are not published
    assert all(edge == float(f"{edge:.3g}") for edge in edges[1:-1])  # rounded quantiles
    assert not set(edges[1:-1]) & set(values.tolist())


def _rows(rng, n, shift=0.0, **extra):
    return [{**{c: float(rng.normal(shift, 1.0)) for c in HEADLINE_FEATURES}, **extra} for _ in range(n)]


def test_report_groups_by_split_only_where_the_corpus_has_splits():
    rng = np.random.default_rng(5)
    release = _rows(rng, 30, split="train") + _rows(rng, 30, 2.0, split="test")
    folder_corpus = _rows(rng, 50)
    report = fidelity_report(release, folder_corpus, list(HEADLINE_FEATURES), corpus_name="c")
    assert isinstance(report["groups"], str) and report["overall"]["items"] == {"release": 60, "corpus": 50}
    split_corpus = _rows(rng, 40, split="train") + _rows(rng, 40, 2.0, split="test")
    grouped = fidelity_report(release, split_corpus, list(HEADLINE_FEATURES), corpus_name="c")
    assert set(grouped["groups"]) == {"split=train", "split=test"}
    assert grouped["groups"]["split=test"]["column_shapes"]["mean"] > 0.6
    assert all(min(h["corpus"]) >= MIN_PRIVATE_PER_BIN for h in grouped["histograms"].values())


def test_a_shifted_release_is_less_similar_than_a_faithful_one():
    rng = np.random.default_rng(6)
    corpus = _rows(rng, 200)
    faithful = compare(_rows(rng, 200), corpus, list(HEADLINE_FEATURES))
    shifted = compare(_rows(rng, 200, 1.5), corpus, list(HEADLINE_FEATURES))
    assert faithful["column_shapes"]["mean"] > 0.85 > shifted["column_shapes"]["mean"]
    assert faithful["frechet"]["frechet_distance"] < 0.5 < shifted["frechet"]["frechet_distance"]


def test_the_threshold_marker_follows_unequal_and_open_bins():
    from pipeline.export.page import marker_position

    edges = [0.0, 1.0, 10.0, 11.0]  # three bins drawn equally wide
    assert marker_position(0.5, edges) == pytest.approx(0.5 / 3)
    assert marker_position(5.5, edges) == pytest.approx(1.5 / 3)
    assert marker_position(-4, edges) == 0.0 and marker_position(99, edges) == 1.0
    open_ends = [None, 1.0, 10.0, None]
    assert marker_position(-4, open_ends) == pytest.approx(0.5 / 3)
    assert marker_position(5.5, open_ends) == pytest.approx(1.5 / 3)
    assert marker_position(99, open_ends) == pytest.approx(2.5 / 3)
