"""Training pairs from a catalog: (annotation → annotated lyric line), cleaned, split by artist and song.

The split is a pure function of the artist (falling back to the song) through a seeded hash, so every run and
every machine puts each song in the same split, no song or artist is ever in two splits, and adding new songs to
a catalog does not reshuffle the old ones. ``write_splits`` records it next to the model for reproducibility.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recommender.catalog import Catalog

SPLITS = ("train", "dev", "test")
DEFAULT_SEED = 13
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
MIN_ANNOTATION_WORDS = 5
MAX_LINES_PER_PAIR = 4
_WORD = re.compile(r"[\w']+")
_HEADER = re.compile(r"^\s*\[[^\]]*\]\s*$")


@dataclass(frozen=True)
class PairFilterReport:
    """Why pairs were left out of training (every count is a pair of the catalog's pairs table)."""

    kept: int
    dropped_short_annotation: int
    dropped_section_header: int
    dropped_restates_line: int
    dropped_no_lines: int


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def song_line_texts(catalog: Catalog) -> dict[str, list[str]]:
    """song_id → its distinct line texts in catalog order (a repeated chorus once): where other lines of a song are
    drawn from, as hard negatives for annotations or as extra positives for visitor queries."""
    return catalog.lines.groupby("song_id")["text"].apply(lambda texts: list(dict.fromkeys(texts))).to_dict()


def restates_line(annotation: str, line_text: str) -> bool:
    """True when the annotation is mostly the lyric itself (quoting the line adds nothing to learn)."""
    annotation_words, line_words = set(words(annotation)), set(words(line_text))
    if not annotation_words:
        return True
    new_words = annotation_words - line_words
    return len(new_words) < 3 or len(new_words) / len(annotation_words) < 0.25


def clean_pairs(catalog: Catalog) -> tuple[pd.DataFrame, PairFilterReport]:
    """One row per (annotation, annotated line), junk filtered.

    Returns:
        Columns ``pair_id, song_id, artist, line_id, line, annotation, fragment_lines`` (``fragment_lines``: all
        line ids of the pair, the relevance set for evaluation), and the filter report.
    """
    line_text = dict(zip(catalog.lines["line_id"], catalog.lines["text"], strict=True))
    artist_of = dict(zip(catalog.songs["song_id"], catalog.songs["artist"], strict=True))
    rows, counts = [], {"short": 0, "header": 0, "restates": 0, "no_lines": 0, "kept": 0}
    for pair in catalog.pairs.itertuples(index=False):
        annotation = " ".join(str(pair.annotation).split())
        line_ids = [line_id for line_id in pair.line_ids if line_id in line_text][:MAX_LINES_PER_PAIR]
        fragment = " ".join(line_text[line_id] for line_id in line_ids)
        if not line_ids:
            counts["no_lines"] += 1
        elif len(words(annotation)) < MIN_ANNOTATION_WORDS:
            counts["short"] += 1
        elif _HEADER.match(annotation) or _HEADER.match(str(pair.fragment)):
            counts["header"] += 1
        elif restates_line(annotation, fragment):
            counts["restates"] += 1
        else:
            counts["kept"] += 1
            rows.extend({"pair_id": int(pair.pair_id), "song_id": pair.song_id, "artist": artist_of[pair.song_id],
                         "line_id": int(line_id), "line": line_text[line_id], "annotation": annotation,
                         "fragment_lines": list(line_ids)} for line_id in line_ids)
    columns = ["pair_id", "song_id", "artist", "line_id", "line", "annotation", "fragment_lines"]
    report = PairFilterReport(counts["kept"], counts["short"], counts["header"], counts["restates"],
                              counts["no_lines"])
    return pd.DataFrame(rows, columns=columns), report


def split_of(group_key: str, *, seed: int = DEFAULT_SEED,
             fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> str:
    """Deterministic split of a group (an artist) from a seeded hash."""
    digest = hashlib.sha256(f"{seed}\x00{group_key.strip().lower()}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < fractions[0]:
        return "train"
    if position < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def assign_splits(catalog: Catalog, *, seed: int = DEFAULT_SEED,
                  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> dict[str, str]:
    """song_id → split, grouping by artist (so an artist's songs never straddle splits)."""
    return {song_id: split_of(artist or song_id, seed=seed, fractions=fractions)
            for song_id, artist in zip(catalog.songs["song_id"], catalog.songs["artist"], strict=True)}


def split_pairs(catalog: Catalog, *, seed: int = DEFAULT_SEED) -> tuple[dict[str, pd.DataFrame], dict[str, str],
                                                                         PairFilterReport]:
    """Cleaned pairs per split, the song → split map, and the filter report."""
    pairs, report = clean_pairs(catalog)
    song_split = assign_splits(catalog, seed=seed)
    split_column = pairs["song_id"].map(song_split)
    return {name: pairs[split_column == name].reset_index(drop=True) for name in SPLITS}, song_split, report


def write_splits(song_split: dict[str, str], path: str | Path, *, seed: int = DEFAULT_SEED) -> Path:
    """Record the split (song → train/dev/test) so a later evaluation uses exactly the same one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seed": seed, "fractions": DEFAULT_FRACTIONS, "songs": song_split}, indent=1))
    return path


def read_splits(path: str | Path) -> dict[str, str]:
    return json.loads(Path(path).read_text())["songs"]
