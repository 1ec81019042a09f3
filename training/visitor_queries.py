"""Visitor-style training queries: short mood/scene queries written for training-split songs from their lyrics.

Annotations explain lines; visitors describe what they want a song to be about. Fine-tuning on annotations alone
barely moves short-query results, so the recipe also trains on (visitor-style query → the lines that carry it)
for songs of the TRAIN split only (the generative pseudo-labelling idea: synthetic queries over the target corpus).
The file holds no lyrics: each row names a song, its query, and the positions of the chosen lines with a short
fingerprint of their text, so a catalog whose lines differ (another ingestion, edited lyrics) drops the row instead
of training on the wrong line.

Row format (JSON Lines): ``{"song_id": ..., "query": ..., "positions": [3, 4], "fingerprint": "9f2c1a0b"}``.

    python -m training.visitor_queries export --catalog DIR --out DIR [--split train|dev|test ...] [--songs N]
                                              [--per-file K] [--queries FILE]
    python -m training.visitor_queries record --catalog DIR --input FILE.jsonl [FILE ...] --queries FILE

``export`` writes songs (train split by default) not yet covered by ``--queries`` as numbered distinct lines (no
titles or artists) for query writers; writers answer ``{"song_id", "query", "lines": [numbers]}`` lines, and ``record``
checks them (known song, 1–4 valid line numbers, 3–12 words, no run of 4+ words copied from the lyrics) and merges
them into the file, written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recommender.catalog import Catalog
from recommender.embeddings import verse_texts
from recommender.errors import RecommenderError
from space_config import SETTINGS
from training.judging import write_text_atomically
from training.pairs import DEFAULT_SEED, SPLITS, assign_splits, song_line_texts, words

DEFAULT_VISITOR_QUERIES = Path(__file__).resolve().parent / "data" / "visitor_queries.jsonl"
MAX_LINES_SHOWN = 80
QUERY_WORDS = (3, 12)
COPIED_RUN = 4


@dataclass(frozen=True)
class VisitorQueryReport:
    """What became of the file's rows against one catalog and split."""

    rows: int
    kept: int
    dropped_not_train_split: int
    dropped_unknown_song: int
    dropped_lines_changed: int


def fingerprint(texts: list[str]) -> str:
    """Eight hex digits identifying the chosen lines' text (whitespace- and case-insensitive)."""
    joined = "\n".join(" ".join(text.lower().split()) for text in texts)
    return hashlib.sha1(joined.encode()).hexdigest()[:8]


def read_rows(path: str | Path) -> list[dict]:
    """The file's rows, each checked for the fields training needs (a clear error names the bad line)."""
    rows = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            valid = (isinstance(row["song_id"], str) and isinstance(row["query"], str) and row["query"].strip()
                     and isinstance(row["positions"], list) and row["positions"]
                     and all(isinstance(position, int) for position in row["positions"])
                     and isinstance(row["fingerprint"], str))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise RecommenderError(f"{path}:{number}: expected {{song_id, query, positions, fingerprint}}, got "
                                   f"{raw[:120]!r}")
        rows.append(row)
    return rows


def visitor_pairs(path: str | Path, catalog: Catalog, song_split: dict[str, str]) -> tuple[pd.DataFrame,
                                                                                            VisitorQueryReport]:
    """(query, line) training rows for the train-split songs of ``catalog``, and what was dropped and why.

    Rows of dev/test songs are dropped even if the file has them, so a different split seed can never leak
    evaluation songs into training.
    """
    rows = read_rows(path)
    song_lines = {song_id: dict(zip(group["position"], group["text"], strict=True))
                  for song_id, group in catalog.lines.groupby("song_id")}
    records, counts = [], {"not_train": 0, "unknown": 0, "changed": 0}
    for row in rows:
        song_id = row["song_id"]
        if song_id not in song_lines:
            counts["unknown"] += 1
            continue
        if song_split.get(song_id) != "train":
            counts["not_train"] += 1
            continue
        lines = [song_lines[song_id].get(position) for position in row["positions"]]
        if None in lines or fingerprint(lines) != row["fingerprint"]:
            counts["changed"] += 1
            continue
        records.extend({"song_id": song_id, "query": row["query"].strip(), "line": line} for line in lines)
    report = VisitorQueryReport(len(rows), len(rows) - sum(counts.values()), counts["not_train"], counts["unknown"],
                                counts["changed"])
    return pd.DataFrame(records, columns=["song_id", "query", "line"]), report


def with_song_lines(pairs: pd.DataFrame, catalog: Catalog, *, per_query: int, seed: int,
                    min_words: int = 4) -> pd.DataFrame:
    """Add up to ``per_query`` other lines of the query's song (song-level positives) to each query's chosen ones.

    A visitor query describes the whole song; pulling more of its lines toward the query is what the line-summing
    seed rule and the song-level rankings read. Short filler lines ("oh yeah") are never added.
    """
    if per_query <= 0 or pairs.empty:
        return pairs
    rng = random.Random(seed)
    song_lines = song_line_texts(catalog)
    extra = []
    for (song_id, query), chosen in pairs.groupby(["song_id", "query"], sort=True)["line"]:
        candidates = [text for text in song_lines[song_id]
                      if text not in set(chosen) and len(words(text)) >= min_words]
        extra += [{"song_id": song_id, "query": query, "line": line}
                  for line in rng.sample(candidates, min(per_query, len(candidates)))]
    return pd.concat([pairs, pd.DataFrame(extra, columns=pairs.columns)], ignore_index=True)


def at_most_lines_per_query(pairs: pd.DataFrame, count: int, *, seed: int) -> pd.DataFrame:
    """Keep at most ``count`` of each query's chosen lines (a seeded sample; 0 = keep all).

    Writers cite up to four lines per query and each becomes a training row: capping them frees training time
    for other positives of the song (its verse, more of its lines) within the same CPU budget.
    """
    if count <= 0 or pairs.empty:
        return pairs
    return (pairs.sample(frac=1.0, random_state=seed).groupby(["song_id", "query"], sort=False).head(count)
            .sort_index())


def with_verses(pairs: pd.DataFrame, catalog: Catalog, *, lines: int = SETTINGS.verse_lines) -> pd.DataFrame:
    """Add, per query, the verse holding its first chosen line as one more positive (the verse's text, exactly as
    ``recommender.embeddings.verse_texts`` cuts and encodes it for the ``blend`` ranking's verse term).

    Lines alone teach a query to find lines; the song-level rankings also read ``lines``-line verses encoded as one
    text, so the query learns to find those too.
    """
    if pairs.empty or lines <= 0:
        return pairs
    verse_of = {}
    for song_id, verse in verse_texts(catalog, lines):
        for line in verse.split("\n"):
            verse_of.setdefault((song_id, line), verse)
    firsts = pairs.drop_duplicates(["song_id", "query"])
    extra = [{"song_id": song_id, "query": query, "line": verse_of[(song_id, line)]}
             for song_id, query, line in zip(firsts["song_id"], firsts["query"], firsts["line"], strict=True)
             if (song_id, line) in verse_of]
    return pd.concat([pairs, pd.DataFrame(extra, columns=pairs.columns)], ignore_index=True)


def training_frame(pairs: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """``anchor``/``positive`` rows for MultipleNegativesRankingLoss, shuffled.

    No same-song hard negatives here: a query describes the whole song, so its other lines are often right too.
    """
    frame = pd.DataFrame({"anchor": pairs["query"].tolist(), "positive": pairs["line"].tolist()}).drop_duplicates()
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def distinct_lines(catalog: Catalog) -> dict[str, list[tuple[int, str]]]:
    """song_id → (position, text) of each distinct non-empty line, first occurrence, in song order.

    The numbering writers see (1-based index into this list) and ``record`` maps back to positions.
    """
    result: dict[str, list[tuple[int, str]]] = {}
    for song_id, group in catalog.lines.sort_values(["song_id", "position"]).groupby("song_id"):
        seen: dict[str, int] = {}
        for position, text in zip(group["position"], group["text"], strict=True):
            if text.strip() and text not in seen:
                seen[text] = position
        result[song_id] = [(position, text) for text, position in seen.items()][:MAX_LINES_SHOWN]
    return result


def copies_lyrics(query: str, lyrics: list[str], run: int = COPIED_RUN) -> bool:
    """True when ``run`` consecutive words of the query appear in that order in one lyric line (a quote)."""
    query_words = words(query)
    grams = {tuple(query_words[i:i + run]) for i in range(len(query_words) - run + 1)}
    for line in lyrics:
        line_words = words(line)
        if grams & {tuple(line_words[i:i + run]) for i in range(len(line_words) - run + 1)}:
            return True
    return False


def cmd_export(args: argparse.Namespace) -> int:
    catalog = Catalog.load(args.catalog)
    split = assign_splits(catalog, seed=args.seed)
    covered = {row["song_id"] for row in read_rows(args.queries)} if args.queries and Path(args.queries).is_file() \
        else set()
    lines = distinct_lines(catalog)
    songs = [song for song in catalog.songs["song_id"] if split[song] in args.split and song not in covered
             and len(lines.get(song, [])) >= 4]
    random.Random(args.seed).shuffle(songs)
    songs = songs[: args.songs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(songs), args.per_file):
        blocks = [f"### song_id={song}\n" + "\n".join(f"{number}. {text}" for number, (_, text)
                                                       in enumerate(lines[song], 1)) + "\n"
                  for song in songs[start:start + args.per_file]]
        (out / f"songs_{start // args.per_file:03d}.txt").write_text("\n".join(blocks), encoding="utf-8")
    print(f"{len(songs)} {'/'.join(args.split)} songs without visitor queries written to {out} "
          f"({args.per_file} per file)")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    catalog = Catalog.load(args.catalog)
    lines = distinct_lines(catalog)
    existing = read_rows(args.queries) if Path(args.queries).is_file() else []
    merged = {(row["song_id"], row["query"]): row for row in existing}
    dropped = {"unknown_song": 0, "bad_lines": 0, "length": 0, "copies_lyrics": 0, "malformed": 0}
    for path in args.input:
        for raw in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(raw) if raw.strip() else None
                if row is None:
                    continue
                song_id, query, numbers = row["song_id"], " ".join(str(row["query"]).split()), row["lines"]
            except (ValueError, KeyError, TypeError):
                dropped["malformed"] += 1
                continue
            song_lines = lines.get(song_id)
            if song_lines is None:
                dropped["unknown_song"] += 1
            elif (not isinstance(numbers, list) or not 1 <= len(numbers) <= 4
                  or not all(isinstance(n, int) and 1 <= n <= len(song_lines) for n in numbers)):
                dropped["bad_lines"] += 1
            elif not QUERY_WORDS[0] <= len(words(query)) <= QUERY_WORDS[1]:
                dropped["length"] += 1
            elif copies_lyrics(query, [text for _, text in song_lines]):
                dropped["copies_lyrics"] += 1
            else:
                chosen = [song_lines[n - 1] for n in dict.fromkeys(numbers)]
                merged[(song_id, query)] = {"song_id": song_id, "query": query,
                                            "positions": [int(position) for position, _ in chosen],
                                            "fingerprint": fingerprint([text for _, text in chosen])}
    write_text_atomically(args.queries, "".join(json.dumps(row, ensure_ascii=False) + "\n"
                                                for _, row in sorted(merged.items())))
    print(f"{len(merged)} visitor queries in {args.queries} ({len(merged) - len(existing):+d}); dropped: {dropped}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.visitor_queries", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="train-split songs to write visitor queries for")
    export.add_argument("--catalog", required=True)
    export.add_argument("--out", required=True, help="directory for songs_NNN.txt files")
    export.add_argument("--songs", type=int, default=1200, help="at most this many songs")
    export.add_argument("--per-file", type=int, default=150)
    export.add_argument("--queries", default=str(DEFAULT_VISITOR_QUERIES), help="skip songs this file covers")
    export.add_argument("--split", nargs="+", choices=SPLITS, default=["train"],
                        help="songs of these splits (dev/test queries are for evaluation only: training drops them)")
    export.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the split seed")
    export.set_defaults(handler=cmd_export)
    record = commands.add_parser("record", help="check writers' queries and merge them into the file")
    record.add_argument("--catalog", required=True, help="the catalog the exported numbering came from")
    record.add_argument("--input", nargs="+", required=True, help="writers' JSONL files")
    record.add_argument("--queries", default=str(DEFAULT_VISITOR_QUERIES))
    record.set_defaults(handler=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (RecommenderError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
