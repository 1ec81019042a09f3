"""Catalog: parquet round trip, atomic save, and validation messages that name file, row and column."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recommender.catalog import Catalog, make_song_id
from recommender.errors import CatalogError


def test_round_trip_keeps_tables_and_hash(tmp_path, small_catalog):
    small_catalog.save(tmp_path / "cat")
    loaded = Catalog.load(tmp_path / "cat")
    pd.testing.assert_frame_equal(loaded.lines, small_catalog.lines)
    assert loaded.songs["valence"].isna().sum() == 1
    assert loaded.content_hash == small_catalog.content_hash


def test_hash_changes_with_any_line_text(small_catalog):
    before = small_catalog.content_hash
    small_catalog.lines.loc[0, "text"] = "something else"
    assert small_catalog.content_hash != before


def test_song_id_ignores_case_and_spacing():
    assert make_song_id("The  Band", "Night Drive") == make_song_id("the band", "night  drive")


def test_save_replaces_atomically_and_keeps_old_on_failure(tmp_path, small_catalog, monkeypatch):
    target = small_catalog.save(tmp_path / "cat")
    before = (target / "lines.parquet").read_bytes()

    def broken_write(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", broken_write)
    with pytest.raises(OSError, match="No space"):
        small_catalog.save(target)
    assert (target / "lines.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cat"]  # no staging directory left behind


def write_tables(directory, small_catalog, **replace):
    directory.mkdir()
    for name, frame in (("songs", small_catalog.songs), ("lines", small_catalog.lines), ("pairs", small_catalog.pairs)):
        frame = replace.get(name, frame)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / f"{name}.parquet")
    return directory


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda songs, lines: (songs.drop(columns=["title"]), lines),
         "songs.parquet: missing required column(s) title"),
        (lambda songs, lines: (songs.assign(valence=[0.2, 1.7, None]), lines), "row 1, column 'valence'"),
        (lambda songs, lines: (songs.assign(valence=["0.2", "happy", None]), lines),
         "songs.parquet: row 1, column 'valence': expected a number, got 'happy'"),
        (lambda songs, lines: (pd.concat([songs, songs.iloc[[0]]]), lines), "row 3, column 'song_id': duplicate id"),
        (lambda songs, lines: (songs, lines.assign(song_id=["nope"] * len(lines))),
         "lines.parquet: row 0, column 'song_id'"),
        (lambda songs, lines: (songs, lines.assign(position=[0] * len(lines))), "column 'position'"),
        (lambda songs, lines: (songs, lines.assign(text=[None, *lines["text"].tolist()[1:]])),
         "lines.parquet: row 0, column 'text': empty value"),
        (lambda songs, lines: (songs.assign(title=["ok", "  ", "ok"]), lines), "row 1, column 'title': empty value"),
    ],
)
def test_malformed_tables_are_refused_with_precise_messages(tmp_path, small_catalog, mutate, message):
    songs, lines = mutate(small_catalog.songs.copy(), small_catalog.lines.copy())
    directory = write_tables(tmp_path / "bad", small_catalog, songs=songs, lines=lines)
    with pytest.raises(CatalogError) as error:
        Catalog.load(directory)
    assert message in str(error.value)


def test_pairs_must_point_at_lines_of_their_own_song(tmp_path, small_catalog):
    pairs = pd.DataFrame([{"pair_id": 0, "song_id": small_catalog.songs["song_id"][0], "line_ids": [3],
                           "fragment": "x", "annotation": "y"}])
    directory = write_tables(tmp_path / "bad", small_catalog, pairs=pairs)
    with pytest.raises(CatalogError, match=r"pairs.parquet: row 0, column 'line_ids': line 3 is not a line of song"):
        Catalog.load(directory)


def test_missing_file_and_garbage_file_are_named(tmp_path, small_catalog):
    small_catalog.save(tmp_path / "cat")
    (tmp_path / "cat" / "lines.parquet").write_bytes(b"\xff\xfe not parquet")
    with pytest.raises(CatalogError, match=r"lines\.parquet: not a readable parquet file"):
        Catalog.load(tmp_path / "cat")
    (tmp_path / "cat" / "pairs.parquet").unlink()
    with pytest.raises(CatalogError, match=r"pairs\.parquet: missing"):
        Catalog.load(tmp_path / "cat")
    with pytest.raises(CatalogError, match="not found"):
        Catalog.load(tmp_path / "nowhere")
