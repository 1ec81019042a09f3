"""Embedding sets: built once per distinct text, atomic, and refused when they belong to another model/catalog."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.embeddings import build_embeddings, load_embeddings
from recommender.encoders import make_fingerprint
from recommender.errors import EmbeddingsMismatchError


class CountingEncoder:
    """A deterministic stand-in that records what it was asked to encode (real encoders are tested elsewhere)."""

    name = model_id = "counting"
    revision = None
    source = "local"
    kind = "text"
    threshold = 0.6
    dimension = 8

    def __init__(self, seed=0):
        self.seed = seed
        self.calls: list[str] = []

    def encode(self, texts, **kwargs):
        self.calls.extend(texts)
        vectors = np.stack([np.random.default_rng(abs(hash((self.seed, t))) % 2**32).normal(size=8) for t in texts])
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    @property
    def fingerprint(self):
        return make_fingerprint(self.encode(["probe one", "probe two"]))


def test_each_distinct_text_is_encoded_once_and_round_trips(tmp_path, small_catalog):
    encoder = CountingEncoder()
    built, report = build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False)
    line_calls = [text for text in encoder.calls if not text.startswith("probe")]
    assert sorted(line_calls) == sorted(set(small_catalog.lines["text"]))
    assert report["distinct_texts_encoded"] == 6 and report["catalog_lines"] == 7
    loaded = load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=encoder)
    np.testing.assert_array_equal(loaded.vectors, built.vectors)
    assert loaded.texts == built.texts
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert {"model_id", "model_revision", "fingerprint", "dimension", "dtype", "catalog_hash"} <= manifest.keys()


def test_other_model_is_refused_naming_both_sides(tmp_path, small_catalog):
    build_embeddings(small_catalog, CountingEncoder(seed=0), tmp_path / "emb", show_progress_bar=False)
    other = CountingEncoder(seed=1)
    other.model_id = "other-model"
    with pytest.raises(EmbeddingsMismatchError, match=r"made by counting .* loaded model is other-model"):
        load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=other)


def test_other_catalog_is_refused(tmp_path, small_catalog):
    encoder = CountingEncoder()
    build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False)
    small_catalog.lines.loc[1, "text"] = "a changed line"
    with pytest.raises(EmbeddingsMismatchError, match="built for catalog"):
        load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=encoder)


def test_tampered_vector_and_truncated_file_are_refused(tmp_path, small_catalog):
    encoder = CountingEncoder()
    build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False)
    path = tmp_path / "emb" / "embeddings.parquet"
    table = pq.read_table(path)
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().copy()
    vectors[3] += 0.01
    tampered = table.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(vectors), 8))
    pq.write_table(tampered, path)
    with pytest.raises(EmbeddingsMismatchError, match="checksum"):
        load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=encoder)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EmbeddingsMismatchError, match="corrupted or truncated"):
        load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=encoder)


def test_failed_build_leaves_previous_set_intact(tmp_path, small_catalog, monkeypatch):
    encoder = CountingEncoder()
    build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False)
    before = (tmp_path / "emb" / "embeddings.parquet").read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(OSError):
        build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False)
    assert (tmp_path / "emb" / "embeddings.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]
