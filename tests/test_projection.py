"""Catalog map: song vectors = normalized mean of line vectors; 2-D PCA fitted once per embedding set."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recommender.index import LineIndex
from recommender.projection import fit_song_map, get_song_map, project, song_map, song_vectors
from tests.conftest import make_catalog


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def fake_recommender(n_songs: int, dimension: int = 8, lines_per_song: int = 3, seed: int = 0):
    """A catalog of n songs plus a LineIndex over random unit vectors (one distinct text per line)."""
    rng = np.random.default_rng(seed)
    catalog = make_catalog([{"title": f"Song {i}", "artist": "Band", "valence": (i % 5) / 4 if i % 7 else None,
                             "lines": [f"song {i} line {j}" for j in range(lines_per_song)]} for i in range(n_songs)])
    vectors = unit(rng.normal(size=(n_songs * lines_per_song, dimension)))
    index = LineIndex(row_song=np.repeat(np.arange(n_songs), lines_per_song),
                      row_text=np.arange(n_songs * lines_per_song), texts=catalog.lines["text"].tolist(),
                      vectors=torch.from_numpy(vectors))
    return SimpleNamespace(catalog=catalog, index=index)


def test_song_vectors_are_normalized_means_of_their_lines():
    recommender = fake_recommender(5)
    vectors = recommender.index.vectors.numpy()
    expected = unit([vectors[3 * i: 3 * i + 3].mean(axis=0) for i in range(5)])
    np.testing.assert_allclose(song_vectors(recommender).numpy(), expected, atol=1e-6)


def test_projection_matches_exact_pca_up_to_sign():
    recommender = fake_recommender(40, dimension=16)
    xy, valence, titles = song_map(recommender)
    assert xy.shape == (40, 2) and valence.shape == (40,) and titles[0] == "Song 0"
    assert np.isnan(valence[0]) and valence[1] == 0.25
    songs = song_vectors(recommender).numpy().astype(np.float64)
    centred = songs - songs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    exact = centred @ vt[:2].T
    for axis in range(2):
        sign = np.sign(exact[:, axis] @ xy[:, axis])
        np.testing.assert_allclose(xy[:, axis], sign * exact[:, axis], atol=1e-4)


def test_fit_is_deterministic_and_cached_per_embedding_set():
    recommender = fake_recommender(30)
    first = get_song_map(recommender)
    assert get_song_map(recommender) is first
    np.testing.assert_array_equal(fit_song_map(recommender).xy, first.xy)  # same picture on every refit
    other = fake_recommender(30, seed=1)
    assert get_song_map(other) is not first


def test_project_places_a_song_vector_on_its_song():
    recommender = fake_recommender(20)
    xy, _, _ = song_map(recommender)
    song = song_vectors(recommender)[7].numpy()
    np.testing.assert_allclose(project(recommender, song), xy[7], atol=1e-5)
    np.testing.assert_allclose(project(recommender, 3.5 * song), xy[7], atol=1e-5)  # normalized first
    with pytest.raises(ValueError, match="dimension"):
        project(recommender, np.ones(3))


@pytest.mark.parametrize("n_songs", [1, 2])
def test_tiny_catalogs_still_map(n_songs):
    recommender = fake_recommender(n_songs)
    xy, _, _ = song_map(recommender)
    assert xy.shape == (n_songs, 2) and np.isfinite(xy).all()
    if n_songs == 2:
        assert xy[0, 0] == pytest.approx(-xy[1, 0], abs=1e-5) and xy[0, 0] != 0


@pytest.mark.slow
def test_default_catalog_map(default_recommender):
    xy, valence, titles = song_map(default_recommender)
    n_songs = len(default_recommender.catalog.songs)
    assert xy.shape == (n_songs, 2) and len(titles) == n_songs and "Headlights on Route 9" in titles
    assert np.nanmin(valence) >= 0 and np.nanmax(valence) <= 1 and xy.std(axis=0).min() > 0
    songs = song_vectors(default_recommender).numpy().astype(np.float64)
    centred = songs - songs.mean(axis=0)
    exact = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    for axis in range(2):  # the randomized PCA finds the real top-2 plane of real embeddings
        assert abs(np.corrcoef(xy[:, axis], exact[:, axis])[0, 1]) > 0.999
    query = default_recommender.encoder.encode_queries(["driving alone at night after a breakup"])[0]
    x, y = project(default_recommender, query)
    assert np.isfinite([x, y]).all()
