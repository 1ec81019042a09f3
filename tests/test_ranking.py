"""The seed ranking and the line index against a straightforward brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recommender.errors import QueryError
from recommender.ranking import check_valence_range, rank_songs, songs_in_valence_range, top_k_rows


def reference_ranking(scores, row_song, valence, low, high, k, threshold, top_n, weight=0.5):
    """Plain-Python statement of the rule: filter by valence, top-k lines, weight, sum per song."""
    def allowed(song):
        if low <= 0 and high >= 1:
            return True
        value = valence[song]
        return not math.isnan(value) and low <= value <= high

    rows = [row for row in range(len(scores)) if allowed(row_song[row])]
    rows.sort(key=lambda row: (-scores[row], row))
    songs: dict[int, list] = {}
    for row in rows[:k]:
        entry = songs.setdefault(row_song[row], [0.0, []])
        entry[0] += scores[row] if scores[row] >= threshold else scores[row] * weight
        entry[1].append(row)
    ranked = sorted(songs.items(), key=lambda item: (-item[1][0], item[0]))
    return [(song, total, lines) for song, (total, lines) in ranked[:top_n]]


def fast_ranking(scores, row_song, valence, low, high, k, threshold, top_n):
    allowed = songs_in_valence_range(valence, low, high)
    tensor = torch.tensor(scores, dtype=torch.float32)
    if not allowed.all():
        tensor = tensor.masked_fill(~torch.from_numpy(allowed[row_song]), float("-inf"))
    rows, values = top_k_rows(tensor, k)
    hits = rank_songs(rows, values, row_song, threshold=threshold, top_n=top_n)
    return [(hit.song_index, hit.score, [line.row for line in hit.lines]) for hit in hits]


@pytest.mark.parametrize("seed", range(25))
def test_matches_reference_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n_songs = int(rng.integers(1, 40))
    n_rows = int(rng.integers(1, 400))
    row_song = rng.integers(0, n_songs, n_rows)
    # Few distinct levels → many exact ties, both among lines and among song sums.
    levels = rng.choice([0.2, 0.45, 0.6, 0.75, 0.9], size=n_rows).astype(np.float32)
    scores = levels.tolist()
    valence = rng.uniform(0, 1, n_songs)
    valence[rng.random(n_songs) < 0.2] = np.nan
    low, high = sorted(rng.uniform(0, 1, 2).tolist())
    if seed % 5 == 0:
        low, high = 0.0, 1.0
    k, top_n = int(rng.integers(1, 120)), int(rng.integers(1, 15))
    expected = reference_ranking(scores, row_song, valence, low, high, k, 0.6, top_n)
    actual = fast_ranking(scores, row_song, valence, low, high, k, 0.6, top_n)
    assert [(song, lines) for song, _, lines in actual] == [(song, lines) for song, _, lines in expected]
    assert [total for _, total, _ in actual] == pytest.approx([total for _, total, _ in expected], abs=1e-6)


def test_threshold_halves_only_lines_below_it():
    rows, values = np.array([0, 1, 2]), np.array([0.8, 0.6, 0.5], dtype=np.float32)
    hits = rank_songs(rows, values, np.array([0, 0, 0]), threshold=0.6, top_n=5)
    assert hits[0].score == pytest.approx(0.8 + 0.6 + 0.25)


def test_empty_candidates_give_no_songs():
    rows, values = top_k_rows(torch.full((5,), float("-inf")), 100)
    assert len(rows) == 0
    assert rank_songs(rows, values, np.zeros(5, dtype=np.int64), threshold=0.6) == []


def test_valence_edges_are_inclusive_and_missing_valence_needs_full_range():
    valence = np.array([0.0, 0.5, 1.0, np.nan])
    assert songs_in_valence_range(valence, 0.0, 1.0).tolist() == [True, True, True, True]
    assert songs_in_valence_range(valence, 0.0, 0.5).tolist() == [True, True, False, False]
    assert songs_in_valence_range(valence, 0.5, 1.0).tolist() == [False, True, True, False]
    assert songs_in_valence_range(valence, 0.5, 0.5).tolist() == [False, True, False, False]


@pytest.mark.parametrize("bounds", [(0.7, 0.2), (-0.1, 0.5), (0.2, 1.5), ("a", 1), (float("nan"), 1.0)])
def test_bad_valence_ranges_are_refused(bounds):
    with pytest.raises(QueryError):
        check_valence_range(*bounds)


def test_narrow_range_still_returns_best_songs_inside_it():
    # 150 strong lines of an out-of-range song would fill a global top-100; the in-range song must still rank.
    scores = [0.95] * 150 + [0.3, 0.31]
    row_song = np.array([0] * 150 + [1, 1])
    valence = np.array([0.9, 0.1])
    result = fast_ranking(scores, row_song, valence, 0.0, 0.3, 100, 0.6, 10)
    assert [song for song, _, _ in result] == [1]
    assert result[0][1] == pytest.approx((0.31 + 0.3) * 0.5)
