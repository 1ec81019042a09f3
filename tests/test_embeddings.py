"""Embedding sets: built once per distinct text, atomic, and refused when they belong to another model/catalog."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.embeddings import (
    build_embeddings,
    distinct_texts,
    load_embeddings,
    song_texts,
    vectors_digest,
    verse_texts,
)
from recommender.encoders import make_fingerprint
from recommender.errors import EmbeddingsMismatchError
from space_config import SETTINGS
from tests.conftest import make_catalog


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
    calls = [text for text in encoder.calls if not text.startswith("probe")]
    line_calls, verse_calls = calls[:6], calls[6:]  # the lines first, then (a text model) the verses and song texts
    assert sorted(line_calls) == sorted(set(small_catalog.lines["text"]))
    units = verse_texts(small_catalog, lines=SETTINGS.verse_lines) + song_texts(small_catalog)
    assert verse_calls == list(dict.fromkeys(text for _, text in units))  # a short song's text is its one verse
    assert report["distinct_texts_encoded"] == 6 and report["catalog_lines"] == 7
    assert report["verses_encoded"] == 3
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


# --- Verses ---------------------------------------------------------------------------------------------------------


def verse_catalog():
    chorus = "oh the chorus comes again"
    first = ["one", "two", chorus, "three", "four", chorus, "five", "six", "seven", chorus, "eight", "nine"]
    return make_catalog([
        {"title": "Zulu", "artist": "Band", "valence": 0.5, "lines": first},  # 10 distinct lines, chorus × 3
        {"title": "Alpha", "artist": "Band", "valence": 0.5, "lines": ["short a", "short b", "short a"]},
        {"title": "Mike", "artist": "Band", "valence": 0.5, "lines": ["x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"]},
    ])


def test_verse_texts_by_hand():
    catalog = verse_catalog()
    chorus = "oh the chorus comes again"
    ids = catalog.songs["song_id"].tolist()
    expected = [
        (ids[0], "\n".join(["one", "two", chorus, "three", "four", "five", "six", "seven"])),  # 8 distinct lines
        (ids[0], "eight\nnine"),  # the last partial run is a verse of its own
        (ids[1], "short a\nshort b"),  # shorter than a verse: one verse, the repeated line once
        (ids[2], "x1\nx2\nx3\nx4\nx5\nx6\nx7\nx8"),  # exactly one verse, no empty one after it
    ]
    assert verse_texts(catalog, lines=8) == expected
    # Position order and catalog.songs order, whatever the row order of the lines table.
    catalog.lines = catalog.lines.iloc[::-1].reset_index(drop=True)
    assert verse_texts(catalog, lines=8) == expected
    assert verse_texts(catalog, lines=4)[:3] == [(ids[0], f"one\ntwo\n{chorus}\nthree"),
                                                 (ids[0], "four\nfive\nsix\nseven"), (ids[0], "eight\nnine")]
    assert [text for _, text in verse_texts(catalog, lines=1)[:4]] == ["one", "two", chorus, "three"]
    assert verse_texts(catalog, lines=0) == []
    # A song text is every distinct line in order, however long the song.
    assert song_texts(catalog) == [(ids[0], "\n".join(["one", "two", chorus, "three", "four", "five", "six", "seven",
                                                        "eight", "nine"])),
                                   expected[2], expected[3]]


def test_verses_round_trip_with_the_manifest(tmp_path):
    catalog = verse_catalog()
    encoder = CountingEncoder()
    built, report = build_embeddings(catalog, encoder, tmp_path / "emb", show_progress_bar=False, verse_lines=8)
    # 4 verses, then the one song text that is not already a verse (the 10-line song's).
    assert built.verse_texts == [text for _, text in verse_texts(catalog, 8)] + [song_texts(catalog)[0][1]]
    assert report["verses_encoded"] == 5
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert manifest["verses"] == {**manifest["verses"], "lines": 8, "song_texts": True, "count": 5}
    assert manifest["build_report"]["verses_encoded"] == 5
    schema = pq.read_schema(tmp_path / "emb" / "embeddings.parquet")
    assert pq.read_schema(tmp_path / "emb" / "verses.parquet") == schema
    loaded = load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    assert loaded.verse_texts == built.verse_texts and loaded.texts == distinct_texts(catalog)
    np.testing.assert_array_equal(loaded.verse_vectors, built.verse_vectors)
    np.testing.assert_array_equal(loaded.vectors, built.vectors)
    assert np.allclose(np.linalg.norm(loaded.verse_vectors, axis=1), 1.0, atol=1e-5)


def test_lines_file_is_unchanged_by_verses_and_a_set_without_verses_loads(tmp_path):
    catalog = verse_catalog()
    encoder = CountingEncoder()
    build_embeddings(catalog, encoder, tmp_path / "with", show_progress_bar=False, verse_lines=8)
    old, report = build_embeddings(catalog, encoder, tmp_path / "without", show_progress_bar=False, verse_lines=0)
    assert (tmp_path / "with" / "embeddings.parquet").read_bytes() == \
        (tmp_path / "without" / "embeddings.parquet").read_bytes()
    assert not (tmp_path / "without" / "verses.parquet").exists() and report["verses_encoded"] == 0
    assert "verses" not in json.loads((tmp_path / "without" / "manifest.json").read_text())
    loaded = load_embeddings(tmp_path / "without", catalog=catalog, encoder=encoder)
    assert loaded.verse_texts is None and loaded.verse_vectors is None and old.verse_texts is None


def test_clip_sets_get_no_verses(tmp_path, small_catalog):
    encoder = CountingEncoder()
    encoder.kind = "clip"
    _, report = build_embeddings(small_catalog, encoder, tmp_path / "emb", show_progress_bar=False, verse_lines=8)
    assert report["verses_encoded"] == 0 and not any("\n" in text for text in encoder.calls)
    assert not (tmp_path / "emb" / "verses.parquet").exists()
    assert load_embeddings(tmp_path / "emb", catalog=small_catalog, encoder=encoder).verse_vectors is None


def test_tampered_missing_or_foreign_verses_are_refused(tmp_path):
    catalog = verse_catalog()
    encoder = CountingEncoder()
    build_embeddings(catalog, encoder, tmp_path / "emb", show_progress_bar=False, verse_lines=8)
    path = tmp_path / "emb" / "verses.parquet"
    original = path.read_bytes()
    table = pq.read_table(path)
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().copy()
    vectors[5] += 0.01
    pq.write_table(table.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(vectors), 8)), path)
    with pytest.raises(EmbeddingsMismatchError, match=r"verses\.parquet: verse vectors do not match .*checksum"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    pq.write_table(table.slice(0, 3), path)
    with pytest.raises(EmbeddingsMismatchError, match=r"verses\.parquet: manifest says 5 verse vectors, file holds 3"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    path.write_bytes(original[:100])
    with pytest.raises(EmbeddingsMismatchError, match=r"verses\.parquet: corrupted or truncated"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    path.unlink()
    with pytest.raises(EmbeddingsMismatchError, match=r"verses\.parquet: missing"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    path.write_bytes(original)
    manifest_path = tmp_path / "emb" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["verses"]["lines"] = 4  # the catalog's 4-line verses were never encoded
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EmbeddingsMismatchError, match=r"4 catalog verse or song text\(s\) have no embedding"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
    # A file that lost the song text its manifest promises (count and checksum made to agree) is refused too.
    pq.write_table(table.slice(0, 4), path)
    kept = table.slice(0, 4).column("embedding").combine_chunks().flatten().to_numpy().reshape(4, 8)
    manifest["verses"].update(lines=8, count=4, vectors_sha256=vectors_digest(kept))
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EmbeddingsMismatchError, match=r"1 catalog verse or song text\(s\) have no embedding"):
        load_embeddings(tmp_path / "emb", catalog=catalog, encoder=encoder)
