"""The song catalog: three tables (songs, lines, pairs) stored as parquet, validated on load.

Everything downstream (embedding builds, search, training) reads a ``Catalog``; nothing reads the source CSVs.
Validation is strict because a silently wrong catalog produces silently wrong rankings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recommender.errors import CatalogError

SONGS_FILE = "songs.parquet"
LINES_FILE = "lines.parquet"
PAIRS_FILE = "pairs.parquet"
REPORT_FILE = "ingest_report.json"

AUDIO_FEATURES = (
    "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
    "instrumentalness", "liveness", "tempo", "duration_ms", "time_signature",
)

SONGS_SCHEMA = pa.schema(
    [
        pa.field("song_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("artist", pa.string(), nullable=False),
        pa.field("valence", pa.float64()),
        pa.field("genius_id", pa.string()),
        pa.field("url", pa.string()),
        *[pa.field(name, pa.float64()) for name in AUDIO_FEATURES],
    ]
)
LINES_SCHEMA = pa.schema(
    [
        pa.field("line_id", pa.int64(), nullable=False),
        pa.field("song_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("song_id", pa.string(), nullable=False),
        pa.field("line_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("fragment", pa.string(), nullable=False),
        pa.field("annotation", pa.string(), nullable=False),
    ]
)
REQUIRED_SONG_COLUMNS = ("song_id", "title", "artist")


def make_song_id(artist: str, title: str) -> str:
    """Stable id from the normalized artist and title, so re-ingesting gives the same ids."""
    key = f"{' '.join(artist.lower().split())}\x00{' '.join(title.lower().split())}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@dataclass
class Catalog:
    """Songs, their lyric lines and (line, annotation) pairs.

    Attributes:
        songs: One row per song, ``SONGS_SCHEMA`` columns.
        lines: One row per lyric line, in song order (``position`` counts from 0 within a song).
        pairs: Genius-style annotations mapped to the catalog lines they explain.
        report: What ingestion dropped or repaired (``ingest_report.json``), if known.
    """

    songs: pd.DataFrame
    lines: pd.DataFrame
    pairs: pd.DataFrame
    report: dict | None = None

    def __post_init__(self) -> None:
        self.songs = _conform(self.songs, SONGS_SCHEMA, SONGS_FILE)
        self.lines = _conform(self.lines, LINES_SCHEMA, LINES_FILE)
        self.pairs = _conform(self.pairs, PAIRS_SCHEMA, PAIRS_FILE)
        validate(self)

    @property
    def content_hash(self) -> str:
        """Hash of what an embedding set depends on: every line's song, position and text."""
        digest = hashlib.sha256()
        ordered = self.lines.sort_values(["song_id", "position"])
        for song_id, position, text in zip(ordered["song_id"], ordered["position"], ordered["text"], strict=True):
            digest.update(f"{song_id}\x1f{position}\x1f{text}\x1e".encode())
        return digest.hexdigest()[:24]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tables atomically: a reader never sees a half-written catalog."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for frame, schema, name in (
                (self.songs, SONGS_SCHEMA, SONGS_FILE),
                (self.lines, LINES_SCHEMA, LINES_FILE),
                (self.pairs, PAIRS_SCHEMA, PAIRS_FILE),
            ):
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                pq.write_table(table, staging / name)
            if self.report is not None:
                (staging / REPORT_FILE).write_text(json.dumps(self.report, indent=2, sort_keys=True))
            replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Catalog:
        """Read and validate a catalog directory.

        Raises:
            CatalogError: A file is missing, unreadable, or breaks the schema (the message names file, row, column).
        """
        source = Path(directory)
        if not source.is_dir():
            raise CatalogError(f"catalog directory not found: {source}")
        for name in (SONGS_FILE, LINES_FILE, PAIRS_FILE):
            if not (source / name).is_file():
                raise CatalogError(f"{source / name}: missing (a catalog needs {SONGS_FILE}, {LINES_FILE}, "
                                   f"{PAIRS_FILE})")
        frames = {}
        for name in (SONGS_FILE, LINES_FILE, PAIRS_FILE):
            path = source / name
            try:
                frames[name] = pq.read_table(path).to_pandas()
            except (pa.ArrowException, OSError) as error:
                raise CatalogError(f"{path}: not a readable parquet file ({error})") from error
        report_path = source / REPORT_FILE
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        return cls(frames[SONGS_FILE], frames[LINES_FILE], frames[PAIRS_FILE], report)

    def song_lines(self, song_id: str) -> list[str]:
        """The lyric lines of one song, in order."""
        rows = self.lines[self.lines["song_id"] == song_id].sort_values("position")
        return rows["text"].tolist()


def replace_directory(staging: Path, target: Path) -> None:
    """Swap ``staging`` in for ``target`` with renames only, keeping the old one until the new one is in place."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(retired, target)  # put the previous version back: never leave nothing in place
            raise
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)


def _conform(frame: pd.DataFrame, schema: pa.Schema, file_name: str) -> pd.DataFrame:
    """Add missing optional columns, check required ones and types; return columns in schema order."""
    if not isinstance(frame, pd.DataFrame):
        raise CatalogError(f"{file_name}: expected a table, got {type(frame).__name__}")
    frame = frame.reset_index(drop=True)
    missing = [f.name for f in schema if not f.nullable and f.name not in frame.columns]
    if missing:
        raise CatalogError(f"{file_name}: missing required column(s) {', '.join(missing)}")
    result = {}
    for schema_field in schema:
        name = schema_field.name
        if name not in frame.columns:
            result[name] = pd.Series([None] * len(frame), dtype=_pandas_dtype(schema_field.type))
            continue
        column = frame[name]
        if not schema_field.nullable:
            null_rows = np.flatnonzero(column.isna().to_numpy())
            if len(null_rows):
                raise CatalogError(f"{file_name}: row {int(null_rows[0])}, column '{name}': empty value "
                                   f"({len(null_rows)} row(s) in all)")
        result[name] = _coerce(column, schema_field.type, file_name, name)
    return pd.DataFrame(result)


def _pandas_dtype(arrow_type: pa.DataType) -> object:
    if pa.types.is_floating(arrow_type):
        return "float64"
    if pa.types.is_integer(arrow_type):
        return "Int64"
    return "object"


def _coerce(column: pd.Series, arrow_type: pa.DataType, file_name: str, name: str) -> pd.Series:
    """Convert a column to its schema type, naming the first bad row when it cannot be converted."""
    if pa.types.is_string(arrow_type):
        bad = [i for i, value in enumerate(column) if value is not None and not pd.isna(value)
               and not isinstance(value, str)]
        if bad:
            raise CatalogError(f"{file_name}: row {bad[0]}, column '{name}': expected text, "
                               f"got {type(column.iloc[bad[0]]).__name__} {column.iloc[bad[0]]!r}")
        return column.astype(object).where(column.notna(), None)
    if pa.types.is_list(arrow_type):
        for i, value in enumerate(column):
            if not isinstance(value, (list, tuple, np.ndarray)) or not all(
                isinstance(item, (int, np.integer)) for item in value
            ):
                raise CatalogError(f"{file_name}: row {i}, column '{name}': expected a list of line ids, "
                                   f"got {value!r}")
        return column.map(lambda value: [int(item) for item in value])
    numeric = pd.to_numeric(column, errors="coerce")
    bad_rows = np.flatnonzero(numeric.isna().to_numpy() & column.notna().to_numpy())
    if len(bad_rows):
        row = int(bad_rows[0])
        raise CatalogError(f"{file_name}: row {row}, column '{name}': expected a number, got {column.iloc[row]!r}")
    if pa.types.is_integer(arrow_type):
        if numeric.isna().any():
            return numeric.astype("Int64")
        fractional = np.flatnonzero((numeric % 1).to_numpy() != 0)
        if len(fractional):
            row = int(fractional[0])
            raise CatalogError(f"{file_name}: row {row}, column '{name}': expected a whole number, "
                               f"got {column.iloc[row]!r}")
        return numeric.astype("int64" if arrow_type.bit_width == 64 else "int32")
    return numeric.astype("float64")


def validate(catalog: Catalog) -> None:
    """Cross-table checks: unique ids, valence range, references that resolve.

    Raises:
        CatalogError: With the file, row and column of the first problem found.
    """
    songs, lines, pairs = catalog.songs, catalog.lines, catalog.pairs
    _no_duplicates(songs, "song_id", SONGS_FILE)
    _no_duplicates(lines, "line_id", LINES_FILE)
    _no_duplicates(pairs, "pair_id", PAIRS_FILE)
    valence = songs["valence"].to_numpy(dtype=float)
    out_of_range = np.flatnonzero((valence < 0) | (valence > 1))
    if len(out_of_range):
        row = int(out_of_range[0])
        raise CatalogError(f"{SONGS_FILE}: row {row}, column 'valence': {valence[row]} is outside 0..1")
    for column in ("title", "artist"):
        blank = np.flatnonzero(songs[column].str.strip().eq("").to_numpy())
        if len(blank):
            raise CatalogError(f"{SONGS_FILE}: row {int(blank[0])}, column '{column}': empty value")
    known_songs = set(songs["song_id"])
    for frame, file_name in ((lines, LINES_FILE), (pairs, PAIRS_FILE)):
        unknown = np.flatnonzero(~frame["song_id"].isin(known_songs).to_numpy())
        if len(unknown):
            row = int(unknown[0])
            raise CatalogError(f"{file_name}: row {row}, column 'song_id': {frame['song_id'].iloc[row]!r} "
                               f"is not in {SONGS_FILE}")
    duplicated_positions = np.flatnonzero(lines.duplicated(["song_id", "position"]).to_numpy())
    if len(duplicated_positions):
        row = int(duplicated_positions[0])
        raise CatalogError(f"{LINES_FILE}: row {row}, column 'position': song {lines['song_id'].iloc[row]!r} "
                           f"has two lines at position {lines['position'].iloc[row]}")
    line_song = dict(zip(lines["line_id"], lines["song_id"], strict=True))
    for row, (song_id, line_ids) in enumerate(zip(pairs["song_id"], pairs["line_ids"], strict=True)):
        wrong = [line_id for line_id in line_ids if line_song.get(line_id) != song_id]
        if wrong:
            raise CatalogError(f"{PAIRS_FILE}: row {row}, column 'line_ids': line {wrong[0]} is not a line of "
                               f"song {song_id!r}")


def _no_duplicates(frame: pd.DataFrame, column: str, file_name: str) -> None:
    duplicated = np.flatnonzero(frame[column].duplicated().to_numpy())
    if len(duplicated):
        row = int(duplicated[0])
        raise CatalogError(f"{file_name}: row {row}, column '{column}': duplicate id {frame[column].iloc[row]!r}")
