"""LineIndex: row layout (a chorus once per song), exact scores, valence masking."""

from __future__ import annotations

import numpy as np

from recommender.embeddings import EmbeddingSet, distinct_texts
from recommender.index import LineIndex
from tests.conftest import make_catalog


def random_embeddings(texts, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(len(texts), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return EmbeddingSet(texts, vectors, {})


def test_repeated_chorus_is_one_row_per_song_and_shared_text_one_vector(small_catalog):
    embeddings = random_embeddings(distinct_texts(small_catalog))
    index = LineIndex.build(small_catalog, embeddings)
    assert len(small_catalog.lines) == 7
    assert len(index) == 6  # the repeated chorus line of "Night Drive" counts once
    assert len(index.texts) == 6


def test_scores_equal_brute_force_dot_products():
    rng = np.random.default_rng(1)
    songs = [{"title": f"s{i}", "artist": "a", "valence": float(rng.uniform()),
              "lines": [f"line {i}-{j}" for j in range(int(rng.integers(1, 12)))] + ["shared line"]}
             for i in range(30)]
    catalog = make_catalog(songs)
    embeddings = random_embeddings(distinct_texts(catalog), dim=32, seed=2)
    index = LineIndex.build(catalog, embeddings)
    query = rng.normal(size=32).astype(np.float32)
    query /= np.linalg.norm(query)
    by_text = dict(zip(embeddings.texts, embeddings.vectors @ query, strict=True))
    rows = catalog.lines.drop_duplicates(["song_id", "text"])
    expected = np.array([by_text[text] for text in rows["text"]])
    np.testing.assert_allclose(index.row_scores(query).numpy(), expected, rtol=1e-5, atol=1e-6)
    _top_rows, top_scores = index.search(query, k=10)
    np.testing.assert_allclose(top_scores, np.sort(expected)[::-1][:10], rtol=1e-5, atol=1e-6)


def test_search_only_returns_rows_of_allowed_songs(small_catalog):
    embeddings = random_embeddings(distinct_texts(small_catalog))
    index = LineIndex.build(small_catalog, embeddings)
    allowed = np.array([False, True, False])
    rows, _ = index.search(embeddings.vectors[0], allowed_songs=allowed, k=100)
    assert set(index.row_song[rows].tolist()) == {1}
    rows, _ = index.search(embeddings.vectors[0], allowed_songs=np.zeros(3, dtype=bool), k=100)
    assert len(rows) == 0
