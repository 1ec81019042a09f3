"""Threshold calibration by percentile matching, on synthetic scores whose answers can be computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.calibration import (
    SAMPLE_QUERIES,
    TOP_K,
    calibrated_threshold,
    pooled_top_scores,
    reference_percentile,
)

GRID = np.arange(100) / 100  # 0.00, 0.01, …, 0.99


def test_reference_percentile_on_a_uniform_grid():
    # 0.00 … 0.59 lie below 0.6: 60 of 100. 0.6 itself is not below.
    assert reference_percentile(GRID, 0.6) == pytest.approx(0.60)
    assert reference_percentile(GRID) == pytest.approx(0.60)
    assert reference_percentile(GRID, 0.25) == pytest.approx(0.25)
    # Any shape is pooled: 30 queries × 100 candidates of the same grid give the same share.
    assert reference_percentile(np.tile(GRID, (30, 1)), 0.6) == pytest.approx(0.60)


def test_calibrated_threshold_on_a_uniform_grid():
    target = 0.5 + GRID / 2  # 0.500, 0.505, …, 0.995 (a model whose cosines run higher)
    assert calibrated_threshold(target, 0.60) == pytest.approx(0.80)
    assert calibrated_threshold(target, 0.25) == pytest.approx(0.625)
    # Nearest rank: 0.604 · 100 = 60.4 → rank 60; 0.606 · 100 = 60.6 → rank 61.
    assert calibrated_threshold(target, 0.604) == pytest.approx(0.800)
    assert calibrated_threshold(target, 0.606) == pytest.approx(0.805)
    # Order of the input does not matter.
    shuffled = np.random.default_rng(0).permutation(target)
    assert calibrated_threshold(shuffled, 0.60) == pytest.approx(0.80)


def test_the_calibrated_threshold_halves_the_same_share_of_candidates():
    rng = np.random.default_rng(1)
    baseline = rng.normal(0.45, 0.1, size=(30, TOP_K))
    target = rng.normal(0.80, 0.03, size=(30, TOP_K))
    share = reference_percentile(baseline, 0.6)
    threshold = calibrated_threshold(target, share)
    assert reference_percentile(target, threshold) == pytest.approx(share, abs=0.5 / target.size)
    # Identity: calibrating a model against itself gives back its own threshold (when 0.6 is one of its scores).
    assert calibrated_threshold(GRID, reference_percentile(GRID, 0.6)) == pytest.approx(0.6)


def test_all_above_and_all_below_the_reference_threshold():
    target = np.array([0.7, 0.9, 0.8])
    all_above = reference_percentile(np.array([0.61, 0.7, 0.99]), 0.6)
    assert all_above == 0.0
    assert calibrated_threshold(target, all_above) == pytest.approx(0.7)  # the minimum: nothing lies below it
    assert reference_percentile(target, calibrated_threshold(target, all_above)) == 0.0
    all_below = reference_percentile(np.array([0.1, 0.2, 0.59]), 0.6)
    assert all_below == 1.0
    above_max = calibrated_threshold(target, all_below)
    assert above_max > 0.9 and above_max == pytest.approx(0.9)  # just above the maximum: everything lies below
    assert reference_percentile(target, above_max) == 1.0


def test_single_score_and_ties():
    assert calibrated_threshold(np.array([0.3]), 0.0) == pytest.approx(0.3)
    assert calibrated_threshold(np.array([0.3]), 0.4) == pytest.approx(0.3)
    assert calibrated_threshold(np.array([0.3]), 0.6) > 0.3
    tied = np.array([0.5, 0.5, 0.5, 0.9])
    assert calibrated_threshold(tied, 0.5) == pytest.approx(0.5)
    assert calibrated_threshold(tied, 0.75) == pytest.approx(0.9)


@pytest.mark.parametrize("bad", [np.array([]), np.zeros((0, 100)), [], np.array([0.5, np.nan]),
                                 np.array([np.inf])])
def test_empty_or_non_finite_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        reference_percentile(bad, 0.6)
    with pytest.raises(ValueError):
        calibrated_threshold(bad, 0.5)


@pytest.mark.parametrize("percentile", [-0.01, 1.01, float("nan")])
def test_percentile_outside_zero_to_one_is_a_value_error(percentile):
    with pytest.raises(ValueError, match="percentile"):
        calibrated_threshold(GRID, percentile)


def test_pooled_top_scores_takes_each_querys_best_k():
    lines = np.eye(4, dtype=np.float32)  # four orthogonal unit lines
    queries = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], dtype=np.float32)
    pooled = pooled_top_scores(queries, lines, k=2)
    assert sorted(pooled.tolist()) == pytest.approx(sorted([1.0, 0.0, 0.8, 0.6]))
    assert pooled_top_scores(queries, lines, k=100).shape == (8,)  # k larger than the catalog: all lines
    with pytest.raises(ValueError):
        pooled_top_scores(queries, np.zeros((0, 4)), k=2)
    with pytest.raises(ValueError):
        pooled_top_scores(queries, np.eye(3), k=2)


def test_sample_queries():
    assert 25 <= len(SAMPLE_QUERIES) <= 40
    assert len(set(SAMPLE_QUERIES)) == len(SAMPLE_QUERIES)
    assert all(query.strip() == query and 0 < len(query.split()) <= 8 for query in SAMPLE_QUERIES)
