"""The rankings (the seed rule and the song-level variants) against straightforward brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recommender.errors import QueryError
from recommender.ranking import (
    RANKING_LABELS,
    RANKING_NAMES,
    build_song_units,
    check_ranking,
    check_valence_range,
    rank_songs,
    rank_songs_by_units,
    songs_in_valence_range,
    top_k_rows,
)
from space_config import SETTINGS


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


# --- Rankings beyond the seed rule: brute-force references ---------------------------------------------------------


def unit(vector):
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [0.0] * len(vector)


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def reference_units(row_song, vectors, n_songs, window_lines, window_stride):
    """Song vectors and windows with plain loops: a song's rows in index order, windows every stride rows, the last
    rows always covered, a song shorter than a window is one window; each vector the normalized sum (= mean)."""
    song_vectors, windows = [], []  # windows: (song, rows)
    for song in range(n_songs):
        rows = [row for row in range(len(row_song)) if row_song[row] == song]
        song_vectors.append(unit([sum(vectors[row][j] for row in rows) for j in range(len(vectors[0]))]))
        if not rows:
            continue
        size = min(window_lines, len(rows))
        starts = list(range(0, len(rows) - size + 1, window_stride))
        if starts[-1] != len(rows) - size:
            starts.append(len(rows) - size)
        windows.extend((song, rows[start:start + size]) for start in starts)
    window_vectors = [unit([sum(vectors[row][j] for row in rows) for j in range(len(vectors[0]))])
                      for _, rows in windows]
    return song_vectors, windows, window_vectors


def reference_best_lines(song, row_song, vectors, query, count):
    rows = [row for row in range(len(row_song)) if row_song[row] == song]
    rows.sort(key=lambda row: (-dot(vectors[row], query), row))
    return rows[:count]


def reference_verse_means(verse_song, verse_vectors, n_songs, dimension):
    """The normalized sum (= mean) of each song's verse vectors; zero for a song without verses."""
    return [unit([sum(verse_vectors[i][j] for i in range(len(verse_song)) if verse_song[i] == song)
                  for j in range(dimension)]) for song in range(n_songs)]


def reference_song_level(ranking, row_song, vectors, n_songs, query, allowed, *, threshold, top_n, shown,
                         window_lines=SETTINGS.window_lines, window_stride=SETTINGS.window_stride,
                         verse_means=None, song_texts=None, blend_weights=SETTINGS.blend_weights):
    """[(song, score, best line rows)] by the named ranking, from the definitions alone (``verse_means`` and
    ``song_texts``: a vector per song, or None for a set without them)."""
    song_vectors, windows, window_vectors = reference_units(row_song, vectors, n_songs, window_lines, window_stride)
    has_rows = [any(song == s for s in row_song) for song in range(n_songs)]
    window_scores = [dot(vector, query) for vector in window_vectors]
    if ranking == "windows":  # the seed rule with windows for lines
        candidates = [i for i in range(len(windows)) if allowed[windows[i][0]]]
        candidates.sort(key=lambda i: (-window_scores[i], i))
        totals: dict[int, float] = {}
        for i in candidates[:SETTINGS.top_k_lines]:
            score = window_scores[i]
            totals[windows[i][0]] = totals.get(windows[i][0], 0.0) + (
                score if score >= threshold else score * SETTINGS.low_score_weight)
        scored = list(totals.items())
    else:
        scored = []
        for song in range(n_songs):
            if not (allowed[song] and has_rows[song]):
                continue
            score = dot(song_vectors[song], query)
            best_window = max((window_scores[i] for i in range(len(windows)) if windows[i][0] == song), default=None)
            if ranking == "hybrid":
                score = SETTINGS.hybrid_song_weight * score + (1 - SETTINGS.hybrid_song_weight) * best_window
            elif ranking == "blend":
                w_song, w_verses, w_window, w_text = blend_weights
                terms = [(w_song, score), (w_window, best_window)]  # the weighted mean of the terms the set has
                if verse_means is not None:
                    terms.append((w_verses, dot(verse_means[song], query)))
                if song_texts is not None:
                    terms.append((w_text, dot(song_texts[song], query)))
                score = sum(weight * term for weight, term in terms) / sum(weight for weight, _ in terms)
            scored.append((song, score))
    scored.sort(key=lambda item: (-item[1], item[0]))
    return [(song, score, reference_best_lines(song, row_song, vectors, query, shown))
            for song, score in scored[:top_n]]


def random_index(rng, *, n_songs, max_rows_per_song, dimension=6, empty_share=0.15, interleave=False):
    counts = rng.integers(1, max_rows_per_song + 1, n_songs)
    counts[rng.random(n_songs) < empty_share] = 0  # songs with no rows
    row_song = np.repeat(np.arange(n_songs), counts)
    if interleave:
        row_song = rng.permutation(row_song)
    vectors = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(len(row_song), dimension))).float(),
                                            dim=1)
    return row_song.astype(np.int64), vectors


def rows_of(vectors):
    return lambda rows: vectors[torch.from_numpy(np.asarray(rows, dtype=np.int64))]


@pytest.mark.parametrize(("window_lines", "window_stride"), [(4, 2), (3, 3), (5, 1), (2, 4), (1, 1)])
@pytest.mark.parametrize("seed", range(4))
def test_build_song_units_matches_reference(seed, window_lines, window_stride):
    rng = np.random.default_rng(seed)
    n_songs = int(rng.integers(1, 15))
    row_song, vectors = random_index(rng, n_songs=n_songs, max_rows_per_song=11, interleave=seed == 3)
    n_songs += 2  # two more songs after the last one with rows: no rows at all
    units = build_song_units(row_song, vectors, n_songs, window_lines=window_lines, window_stride=window_stride)
    song_vectors, windows, window_vectors = reference_units(row_song.tolist(), vectors.tolist(), n_songs,
                                                            window_lines, window_stride)
    assert units.song_vectors.shape == (n_songs, vectors.shape[1])
    assert units.song_vectors.numpy() == pytest.approx(np.array(song_vectors), abs=1e-5)
    assert units.window_song.tolist() == [song for song, _ in windows]
    song_rows = [[row for row in range(len(row_song)) if row_song[row] == song] for song in range(n_songs)]
    members = []
    for first, size, song in zip(units.window_first_row.tolist(), units.window_size.tolist(),
                                 units.window_song.tolist(), strict=True):
        start = song_rows[song].index(first)
        members.append(song_rows[song][start:start + size])
    assert members == [rows for _, rows in windows]
    assert units.window_vectors.numpy() == pytest.approx(np.array(window_vectors), abs=1e-5)
    for song in range(n_songs):
        rows = units.song_rows[units.song_row_start[song]:units.song_row_start[song + 1]].tolist()
        assert rows == song_rows[song]


def test_build_song_units_by_hand():
    # Song 0: 7 rows (windows of 4 every 2 → starts 0, 2 and the last lines 3); song 1: 2 rows (one short window);
    # song 2: no rows; song 3: exactly one window.
    row_song = np.array([0] * 7 + [1] * 2 + [3] * 4)
    vectors = torch.eye(13)[:, :13]
    units = build_song_units(row_song, vectors, 4, window_lines=4, window_stride=2)
    assert units.window_song.tolist() == [0, 0, 0, 1, 3]
    assert units.window_first_row.tolist() == [0, 2, 3, 7, 9]
    assert units.window_size.tolist() == [4, 4, 4, 2, 4]
    assert units.song_vectors[2].abs().sum() == 0  # no rows: a zero vector, never NaN
    assert units.song_vectors[1].tolist()[7:9] == pytest.approx([1 / math.sqrt(2)] * 2)
    assert units.window_vectors[2].tolist()[3:7] == pytest.approx([0.5] * 4)  # rows 3..6: the song's last lines
    assert units.song_row_start.tolist() == [0, 7, 9, 9, 13]


def random_mask_and_query(rng, n_songs: int, dimension: int, *, full_range: bool):
    """A valence mask over songs (some without valence; the full range or a random one) and a unit query."""
    valence = rng.uniform(0, 1, n_songs)
    valence[rng.random(n_songs) < 0.2] = np.nan
    low, high = (0.0, 1.0) if full_range else sorted(rng.uniform(0, 1, 2).tolist())
    query = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=dimension)).float(), dim=0)
    return songs_in_valence_range(valence, low, high), query


def assert_hits_match_reference(hits, expected, allowed, row_song) -> None:
    """Same songs, scores and shown lines as the reference; only allowed songs; every line from its song."""
    assert [hit.song_index for hit in hits] == [song for song, _, _ in expected]
    assert [hit.score for hit in hits] == pytest.approx([score for _, score, _ in expected], abs=1e-5)
    assert [[line.row for line in hit.lines] for hit in hits] == [lines for _, _, lines in expected]
    for hit in hits:
        assert allowed[hit.song_index], "a song outside the valence range was ranked"
        assert all(row_song[line.row] == hit.song_index for line in hit.lines)


@pytest.mark.parametrize("ranking", ["song-mean", "windows", "hybrid", "blend"])
@pytest.mark.parametrize("seed", range(12))
def test_song_level_rankings_match_reference_and_respect_the_valence_mask(seed, ranking):
    rng = np.random.default_rng(100 + seed)
    n_songs = int(rng.integers(2, 70))
    row_song, vectors = random_index(rng, n_songs=n_songs, max_rows_per_song=int(rng.integers(1, 16)),
                                     interleave=seed % 4 == 3)
    allowed, query = random_mask_and_query(rng, n_songs, vectors.shape[1], full_range=seed % 6 == 0)
    top_n, shown, threshold = int(rng.integers(1, 20)), int(rng.integers(1, 5)), 0.3
    units = build_song_units(row_song, vectors, n_songs)
    hits = rank_songs_by_units(ranking, query.numpy(), units, rows_of(vectors), allowed_songs=allowed,
                               threshold=threshold, top_n=top_n, shown_lines=shown)
    expected = reference_song_level(ranking, row_song.tolist(), vectors.tolist(), n_songs, query.tolist(),
                                    allowed.tolist(), threshold=threshold, top_n=top_n, shown=shown)
    assert_hits_match_reference(hits, expected, allowed, row_song)
    for hit in hits:
        assert [line.score for line in hit.lines] == pytest.approx(
            [float(vectors[line.row] @ query) for line in hit.lines], abs=1e-5)


def test_windows_ranking_keeps_only_the_top_k_windows():
    # 150 songs of one strong window each and a weak song: the weak one is past the top-100 windows.
    rng = np.random.default_rng(7)
    row_song, vectors = random_index(rng, n_songs=151, max_rows_per_song=1, empty_share=0.0)
    query = vectors[0].clone()
    vectors[:150] = query  # every strong song's only line is the query itself
    units = build_song_units(row_song, vectors, 151)
    hits = rank_songs_by_units("windows", query.numpy(), units, rows_of(vectors), allowed_songs=None,
                               threshold=0.6, top_n=200)
    assert len(hits) == SETTINGS.top_k_lines and 150 not in {hit.song_index for hit in hits}
    # (Which 100 of the 150 equal songs: the window sums come from prefix sums, so "equal" is equal to ~1e-7.)
    assert all(hit.score == pytest.approx(1.0, abs=1e-5) for hit in hits)


@pytest.mark.parametrize("ranking", ["song-mean", "hybrid", "blend"])
def test_songs_without_rows_or_outside_the_range_never_rank(ranking):
    # Every line points away from the query, so a song without rows (score 0) would win if it were not excluded.
    vectors = -torch.nn.functional.normalize(torch.ones(4, 3), dim=1)
    row_song = np.array([0, 0, 2, 3])
    units = build_song_units(row_song, vectors, 5)
    query = np.ones(3, dtype=np.float32) / math.sqrt(3)
    hits = rank_songs_by_units(ranking, query, units, rows_of(vectors), allowed_songs=None, threshold=0.6, top_n=10)
    assert sorted(hit.song_index for hit in hits) == [0, 2, 3]
    allowed = np.array([True, True, True, False, True])
    hits = rank_songs_by_units(ranking, query, units, rows_of(vectors), allowed_songs=allowed, threshold=0.6,
                               top_n=10)
    assert sorted(hit.song_index for hit in hits) == [0, 2]
    nothing = rank_songs_by_units(ranking, query, units, rows_of(vectors), allowed_songs=np.zeros(5, dtype=bool),
                                  threshold=0.6, top_n=10)
    assert nothing == []


def test_hybrid_is_the_weighted_sum_of_song_vector_and_best_window():
    rng = np.random.default_rng(3)
    row_song, vectors = random_index(rng, n_songs=6, max_rows_per_song=9, empty_share=0.0)
    query = vectors[5].numpy()
    units = build_song_units(row_song, vectors, 6)
    song_mean = {hit.song_index: hit.score for hit in rank_songs_by_units(
        "song-mean", query, units, rows_of(vectors), allowed_songs=None, threshold=0.6, top_n=6)}
    hybrid = rank_songs_by_units("hybrid", query, units, rows_of(vectors), allowed_songs=None, threshold=0.6, top_n=6)
    weight = SETTINGS.hybrid_song_weight
    for hit in hybrid:
        best_window = max(float(units.window_vectors[i] @ torch.from_numpy(query))
                          for i in np.flatnonzero(units.window_song == hit.song_index))
        assert hit.score == pytest.approx(weight * song_mean[hit.song_index] + (1 - weight) * best_window, abs=1e-5)


def random_verses(rng, row_song, n_songs, dimension, *, none_share=0.25):
    """Random unit verse vectors: a few per song that has rows, none for some of them (and songs without rows)."""
    counts = rng.integers(1, 4, n_songs)
    counts[rng.random(n_songs) < none_share] = 0
    counts[np.bincount(row_song, minlength=n_songs) == 0] = 0
    verse_song = rng.permutation(np.repeat(np.arange(n_songs), counts)).astype(np.int64)
    verse_vectors = torch.nn.functional.normalize(
        torch.from_numpy(rng.normal(size=(len(verse_song), dimension))).float(), dim=1)
    return verse_song, verse_vectors


@pytest.mark.parametrize("seed", range(12))
def test_blend_with_verses_and_song_texts_matches_reference_and_respects_the_valence_mask(seed):
    rng = np.random.default_rng(500 + seed)
    n_songs = int(rng.integers(2, 60))
    row_song, vectors = random_index(rng, n_songs=n_songs, max_rows_per_song=int(rng.integers(1, 14)),
                                     interleave=seed % 4 == 3)
    verse_song, verse_vectors = random_verses(rng, row_song, n_songs, vectors.shape[1])
    allowed, query = random_mask_and_query(rng, n_songs, vectors.shape[1], full_range=seed % 6 == 0)
    top_n, shown = int(rng.integers(1, 20)), int(rng.integers(1, 5))
    weights = SETTINGS.blend_weights if seed % 2 == 0 else tuple(rng.uniform(0.1, 1.0, 4).tolist())
    song_texts = None if seed % 3 == 0 else torch.nn.functional.normalize(
        torch.from_numpy(rng.normal(size=(n_songs, vectors.shape[1]))).float(), dim=1)
    units = build_song_units(row_song, vectors, n_songs, verse_song=verse_song, verse_vectors=verse_vectors,
                             song_text_vectors=song_texts)
    verse_means = reference_verse_means(verse_song.tolist(), verse_vectors.tolist(), n_songs, vectors.shape[1])
    assert units.verse_mean_vectors.numpy() == pytest.approx(np.array(verse_means), abs=1e-5)
    hits = rank_songs_by_units("blend", query.numpy(), units, rows_of(vectors), allowed_songs=allowed,
                               threshold=0.3, top_n=top_n, shown_lines=shown, blend_weights=weights)
    expected = reference_song_level("blend", row_song.tolist(), vectors.tolist(), n_songs, query.tolist(),
                                    allowed.tolist(), threshold=0.3, top_n=top_n, shown=shown,
                                    verse_means=verse_means,
                                    song_texts=None if song_texts is None else song_texts.tolist(),
                                    blend_weights=weights)
    assert_hits_match_reference(hits, expected, allowed, row_song)


def test_build_song_units_verse_means_by_hand():
    row_song = np.array([0, 0, 1, 2])
    vectors = torch.eye(4)
    verse_song = np.array([2, 0, 0])
    verse_vectors = torch.tensor([[0.0, 0, 1, 0], [1.0, 0, 0, 0], [0.0, 1, 0, 0]])
    units = build_song_units(row_song, vectors, 4, verse_song=verse_song, verse_vectors=verse_vectors.numpy())
    assert units.verse_mean_vectors.tolist()[0] == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2), 0, 0])
    assert units.verse_mean_vectors[1].abs().sum() == 0 and units.verse_mean_vectors[3].abs().sum() == 0
    assert units.verse_mean_vectors.tolist()[2] == [0.0, 0.0, 1.0, 0.0]
    assert build_song_units(row_song, vectors, 4).verse_mean_vectors is None


@pytest.mark.parametrize("seed", range(4))
def test_blend_without_verses_or_song_texts_is_hybrid_with_renormalized_weights(seed):
    rng = np.random.default_rng(900 + seed)
    row_song, vectors = random_index(rng, n_songs=30, max_rows_per_song=10)
    query = vectors[int(rng.integers(len(vectors)))].numpy()
    units = build_song_units(row_song, vectors, 30)
    w = SETTINGS.hybrid_song_weight
    # Song and window weights that renormalize to hybrid's: "blend" without verses and song texts must rank exactly
    # like it.
    blend = rank_songs_by_units("blend", query, units, rows_of(vectors), allowed_songs=None, threshold=0.6,
                                top_n=30, blend_weights=(0.6 * w, 0.7, 0.6 * (1 - w), 0.9))
    hybrid = rank_songs_by_units("hybrid", query, units, rows_of(vectors), allowed_songs=None, threshold=0.6,
                                 top_n=30)
    assert [hit.song_index for hit in blend] == [hit.song_index for hit in hybrid]
    assert [hit.score for hit in blend] == pytest.approx([hit.score for hit in hybrid], abs=1e-6)
    assert [hit.lines for hit in blend] == [hit.lines for hit in hybrid]
    # With verses, the verse term changes the scores (same weights).
    verse_song, verse_vectors = random_verses(rng, row_song, 30, vectors.shape[1], none_share=0.0)
    with_verses = build_song_units(row_song, vectors, 30, verse_song=verse_song, verse_vectors=verse_vectors)
    blended = rank_songs_by_units("blend", query, with_verses, rows_of(vectors), allowed_songs=None, threshold=0.6,
                                  top_n=30, blend_weights=(0.6 * w, 0.7, 0.6 * (1 - w), 0.9))
    assert [hit.score for hit in blended] != pytest.approx([hit.score for hit in hybrid], abs=1e-6)


def test_check_ranking():
    assert RANKING_NAMES[0] == "seed" and set(RANKING_LABELS) == set(RANKING_NAMES)
    assert check_ranking(None) == SETTINGS.default_ranking in RANKING_NAMES
    for name in RANKING_NAMES:
        assert check_ranking(name) == name
    assert check_ranking(" Hybrid ") == "hybrid"
    for bad in ("", "best", "seed,hybrid", 3):
        with pytest.raises(QueryError, match=r"unknown .*choose one of seed, song-mean, windows, hybrid, blend"):
            check_ranking(bad)
    units = build_song_units(np.array([0]), torch.ones(1, 2), 1)
    with pytest.raises(QueryError, match="unknown ranking"):
        rank_songs_by_units("best", np.ones(2, dtype=np.float32), units, rows_of(torch.ones(1, 2)),
                            allowed_songs=None, threshold=0.6)


@pytest.mark.parametrize("seed", range(5))
def test_seed_ranking_is_unchanged_through_the_recommender(seed, small_catalog, packaged_encoder, tmp_path):
    """Recommender.rank(ranking="seed") is the index's top-k lines summed by rank_songs, as before the variants."""
    from recommender.service import Recommender

    small_catalog.save(tmp_path / "cat")
    recommender = Recommender.open(catalog_dir=tmp_path / "cat", model="baseline")
    query = packaged_encoder.encode_queries(["rain on a summer night"])[0]
    allowed = np.random.default_rng(seed).random(len(small_catalog.songs)) < 0.7
    rows, scores = recommender.index.search(query, allowed_songs=allowed, k=SETTINGS.top_k_lines)
    expected = rank_songs(rows, scores, recommender.index.row_song, threshold=recommender.threshold, top_n=10)
    actual = recommender.rank(query, allowed_songs=allowed, top_n=10, ranking="seed")
    assert [(hit.song_index, hit.score, hit.lines) for hit in actual] == \
        [(hit.song_index, hit.score, hit.lines) for hit in expected]
    assert recommender._units is None  # the seed rule never builds the song-level units
