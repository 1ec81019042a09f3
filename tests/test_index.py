"""LineIndex: row layout (a chorus once per song), exact scores, valence masking, fast backends vs exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from recommender.embeddings import EmbeddingSet, distinct_texts
from recommender.index import LineIndex, top_k_scores
from recommender.ranking import top_k_rows
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


@pytest.mark.parametrize("seed", range(20))
def test_numpy_top_k_is_the_ranking_rule(seed):
    rng = np.random.default_rng(seed)
    scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=int(rng.integers(1, 500))).astype(np.float32)
    scores[rng.random(len(scores)) < 0.3] = -np.inf
    k = int(rng.integers(0, 150))
    want_rows, want_values = top_k_rows(torch.from_numpy(scores.copy()), k)
    rows, values = top_k_scores(scores, k)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(values, want_values)
    assert rows.dtype == np.int64 and values.dtype == np.float32


# --- Fast backends (int8 scan, faiss IVF) against the exact float32 reference ------------------------------------

def clustered_unit_vectors(n, dim, seed=0, clusters=64):
    """Unit vectors around random centres (a structure like real sentence embeddings, so IVF lists mean something)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, clusters, n)] + rng.uniform(0.6, 1.5, (n, 1)).astype(np.float32) * rng.normal(
        size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def synthetic_index(vectors, backend, seed=0, songs=None):
    """Rows over ``vectors``: every text once, plus 10% of texts reused by a second song (shared lines)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    shared = rng.choice(n, n // 10, replace=False)
    row_text = np.concatenate([np.arange(n), shared])
    songs = songs or max(1, n // 20)
    row_song = rng.integers(0, songs, len(row_text))
    texts = [f"text {i}" for i in range(n)]
    return LineIndex(row_song, row_text, texts, vectors, backend=backend)


def queries_near(vectors, count, seed=1):
    rng = np.random.default_rng(seed)
    queries = vectors[rng.integers(0, len(vectors), count)] + 0.9 * rng.normal(
        size=(count, vectors.shape[1])).astype(np.float32) / np.sqrt(vectors.shape[1])
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def clustered():
    pytest.importorskip("faiss", reason="faiss-cpu is needed for the int8 and ivf backends")
    vectors = clustered_unit_vectors(20_000, 64)
    indexes = {backend: synthetic_index(vectors, backend) for backend in ("exact", "int8", "ivf")}
    indexes["ivf"].nprobe = 64  # of 141 lists: these 64-d clusters overlap more than 768-d sentence embeddings
    return vectors, indexes


@pytest.mark.parametrize("backend", ["int8", "ivf"])
def test_fast_backend_recall_and_exact_scores(clustered, backend):
    vectors, indexes = clustered
    exact, fast = indexes["exact"], indexes[backend]
    assert fast.backend == backend
    recalls = []
    for query in queries_near(vectors, 30):
        want_rows, _ = exact.search(query, k=100)
        rows, scores = fast.search(query, k=100)
        assert len(rows) == 100
        recalls.append(len(set(rows.tolist()) & set(want_rows.tolist())) / 100)
        # Returned scores are the exact float32 cosines of the returned rows, best first, ties by lower row.
        np.testing.assert_allclose(scores, exact.row_scores(query).numpy()[rows], rtol=1e-6, atol=1e-6)
        assert all((a, r) <= (b, s) for a, r, b, s in zip(-scores[:-1], rows[:-1], -scores[1:], rows[1:],
                                                           strict=True))
    assert np.mean(recalls) >= 0.98, recalls


def test_int8_equals_exact_on_uniform_random_vectors_with_shared_texts():
    pytest.importorskip("faiss", reason="faiss-cpu is needed for the int8 backend")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, fast = synthetic_index(vectors, "exact", seed=4), synthetic_index(vectors, "int8", seed=4)
    for query in queries_near(vectors, 10, seed=5):
        want_rows, want_scores = exact.search(query, k=100)
        rows, scores = fast.search(query, k=100)
        np.testing.assert_array_equal(rows, want_rows)  # same rows, same order (shared texts tie: lower row first)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["exact", "int8", "ivf"])
@pytest.mark.parametrize("share", [0.5, 0.03])
def test_valence_mask_is_applied_inside_every_backend(clustered, backend, share):
    vectors, indexes = clustered
    index, exact = indexes[backend], indexes["exact"]
    n_songs = int(index.row_song.max()) + 1
    allowed = np.random.default_rng(7).random(n_songs) < share
    recalls = []
    for query in queries_near(vectors, 10, seed=8):
        rows, scores = index.search(query, allowed_songs=allowed, k=100)
        assert len(rows) == 100 and allowed[index.row_song[rows]].all()
        want_rows, _ = exact.search(query, allowed_songs=allowed, k=100)
        recalls.append(len(set(rows.tolist()) & set(want_rows.tolist())) / 100)
        np.testing.assert_allclose(scores, exact.row_scores(query).numpy()[rows], rtol=1e-6, atol=1e-6)
    assert np.mean(recalls) >= 0.98, recalls
    rows, scores = index.search(vectors[0], allowed_songs=np.zeros(n_songs, dtype=bool), k=100)
    assert len(rows) == 0 and len(scores) == 0


def test_ivf_probes_every_list_when_the_range_is_narrow(clustered):
    _, indexes = clustered
    searcher = indexes["ivf"]._searcher
    n_songs = int(indexes["ivf"].row_song.max()) + 1
    wide = indexes["ivf"]._text_mask(np.arange(n_songs) % 2 == 0)
    narrow = indexes["ivf"]._text_mask(np.arange(n_songs) % 100 == 0)
    assert indexes["ivf"].backend == "ivf" and searcher.probes(8, None) == 8
    assert 8 < searcher.probes(8, wide) < searcher.nlist
    assert searcher.probes(8, narrow) == searcher.nlist


def test_backend_is_chosen_by_size_and_can_be_overridden(monkeypatch):
    from recommender import index as index_module

    assert index_module.choose_backend(199_999, "auto") == "exact"
    if index_module.faiss_available():
        assert index_module.choose_backend(200_000, "auto") == "int8"
        assert index_module.choose_backend(5_000_000, "auto") == "ivf"
        assert index_module.choose_backend(10, "ivf") == "ivf"
    assert index_module.choose_backend(10**9, "exact") == "exact"
    with pytest.raises(ValueError):
        index_module.choose_backend(10, "hnsw")
    pytest.importorskip("faiss", reason="faiss-cpu is needed for the int8 and ivf backends")
    monkeypatch.setattr(index_module, "SETTINGS", dataclasses.replace(
        index_module.SETTINGS, index_int8_min_vectors=500, index_ivf_min_vectors=2000))
    vectors = clustered_unit_vectors(2000, 16)
    assert synthetic_index(vectors[:499], "auto").backend == "exact"
    assert synthetic_index(vectors[:500], "auto").backend == "int8"
    assert synthetic_index(vectors, "auto").backend == "ivf"
    assert synthetic_index(vectors, "exact").backend == "exact"


def test_build_uses_the_configured_backend(small_catalog, monkeypatch):
    pytest.importorskip("faiss", reason="faiss-cpu is needed for the int8 backend")
    from recommender import index as index_module

    embeddings = random_embeddings(distinct_texts(small_catalog))
    assert LineIndex.build(small_catalog, embeddings).backend == "exact"
    monkeypatch.setattr(index_module, "SETTINGS", dataclasses.replace(index_module.SETTINGS, index_backend="int8"))
    index = LineIndex.build(small_catalog, embeddings)
    assert index.backend == "int8" and len(index) == 6
    rows, _ = index.search(embeddings.vectors[0], allowed_songs=np.array([False, True, False]), k=100)
    assert set(index.row_song[rows].tolist()) == {1}
    assert LineIndex.build(small_catalog, embeddings, backend="exact").backend == "exact"


def test_memory_per_row_of_768_dimensional_lines():
    pytest.importorskip("faiss", reason="faiss-cpu is needed for the int8 and ivf backends")
    vectors = clustered_unit_vectors(20_000, 768, clusters=32)
    row_text = np.arange(len(vectors))
    row_song = row_text // 25
    texts = [""] * len(vectors)
    exact = LineIndex(row_song, row_text, texts, vectors, backend="exact")
    int8 = LineIndex(row_song, row_text, texts, vectors, backend="int8")
    ivf = LineIndex(row_song, row_text, texts, vectors, backend="ivf")
    assert exact.nbytes_per_row() >= 768 * 4
    # 768 code bytes + int32 row maps; ivf adds int64 ids and its centroids (3072·√n bytes, ~22 B/row at 20k rows,
    # ~3 B/row at 1M).
    assert int8.nbytes_per_row() <= 800
    assert ivf.nbytes_per_row() <= 800 + 768 * 4 * ivf._searcher.nlist / len(ivf)
    for index in (int8, ivf):
        report = index.memory_report()
        assert report["mapped_float32_file"] == vectors.nbytes and "float32_vectors" not in report
        assert torch.equal(index.vectors, torch.from_numpy(vectors))  # the mapped file holds the same vectors
        assert index.nbytes() == sum(value for key, value in report.items() if key != "mapped_float32_file")
