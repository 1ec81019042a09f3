"""Blind relevance judging of visitor-style queries over the pooled top songs of every compared configuration.

    python -m training.judging unjudged [--catalog DIR] --queries FILE --judgments FILE --models M [M ...]
                                        --rankings R [R ...] [--depth 10] [--out FILE.jsonl] [--seed N]
    python -m training.judging record --judgments FILE --input FILE.jsonl [--queries FILE] [--catalog DIR]
                                      [--overwrite]

A configuration is a (model, ranking) pair. Each runs every query; the union of their top-``depth`` songs per
query is the pool, and every pooled (query, song) pair must be judged from the lyrics (see training/eval/RUBRIC.md)
before ``training.evaluate --queries`` scores anything. The pairs to judge are listed blind: nothing says which
configuration retrieved a song, and songs come in a seeded shuffle per query rather than by rank. Judgments are
``{"query_id", "song_id", "grade", "artist", "title"}`` lines (no lyrics), sorted, written atomically.

Exit status: 0 done; 1 ``record`` refused conflicting grades (``--overwrite`` replaces them); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from recommender.catalog import Catalog
from recommender.errors import RecommenderError
from recommender.ranking import RANKING_NAMES
from recommender.service import Recommender
from training.pairs import DEFAULT_SEED

GRADES = (0, 1, 2)
DEFAULT_DEPTH = 10
Pair = tuple[str, str]
Config = tuple[str, str]
# (model, ranking) → query_id → song_ids, best first.
Runs = dict[Config, dict[str, list[str]]]


class JudgingError(RecommenderError):
    """A queries or judgments file, or rows to record, are malformed; the message says where."""


class UnjudgedPairsError(RecommenderError):
    """Pooled pairs lack a judgment: scoring now would count them as irrelevant, which biases the comparison."""

    def __init__(self, pairs: list[Pair], command: str) -> None:
        self.pairs = pairs
        self.command = command
        super().__init__(f"{len(pairs)} pooled (query, song) pairs are not judged yet; list them with:\n  {command}")


def config_label(model: str, ranking: str) -> str:
    """The one name a configuration goes by in metrics, reports and the push gate."""
    return f"{model} | {ranking}"


def _read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise JudgingError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(item, dict):
            raise JudgingError(f"{path}:{number}: expected a JSON object")
        rows.append((number, item))
    return rows


def load_queries(path: str | Path) -> dict[str, str]:
    """``query_id → query`` in file order.

    Raises:
        JudgingError: Missing file, bad line, missing or duplicate ``query_id``, empty query.
    """
    if not Path(path).is_file():
        raise JudgingError(f"{path}: no such queries file")
    queries: dict[str, str] = {}
    for number, item in _read_jsonl(path):
        query_id, query = item.get("query_id"), item.get("query")
        if not isinstance(query_id, str) or not query_id or not isinstance(query, str) or not query.strip():
            raise JudgingError(f"{path}:{number}: needs a non-empty string query_id and query")
        if query_id in queries:
            raise JudgingError(f"{path}:{number}: duplicate query_id {query_id!r}")
        queries[query_id] = query
    return queries


def check_grade(value: object) -> int:
    """A grade is the int 0, 1 or 2 (not a bool, float or string: a typo must not become a judgment)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in GRADES:
        raise JudgingError(f"grade must be 0, 1 or 2, got {value!r}")
    return value


def load_judgment_rows(path: str | Path) -> dict[Pair, dict]:
    """``(query_id, song_id) → row`` of a judgments file (a missing file is an empty one).

    Raises:
        JudgingError: Bad line, bad grade, or the same pair twice.
    """
    rows: dict[Pair, dict] = {}
    if not Path(path).is_file():
        return rows
    for number, item in _read_jsonl(path):
        query_id, song_id = item.get("query_id"), item.get("song_id")
        if not isinstance(query_id, str) or not isinstance(song_id, str):
            raise JudgingError(f"{path}:{number}: needs string query_id and song_id")
        try:
            grade = check_grade(item.get("grade"))
        except JudgingError as error:
            raise JudgingError(f"{path}:{number}: {error}") from None
        if (query_id, song_id) in rows:
            raise JudgingError(f"{path}:{number}: ({query_id}, {song_id}) is judged twice")
        rows[(query_id, song_id)] = {"query_id": query_id, "song_id": song_id, "grade": grade,
                                     "artist": str(item.get("artist", "")), "title": str(item.get("title", ""))}
    return rows


def load_judgments(path: str | Path) -> dict[Pair, int]:
    """``(query_id, song_id) → grade``."""
    return {pair: row["grade"] for pair, row in load_judgment_rows(path).items()}


def write_judgments(path: str | Path, rows: Iterable[dict]) -> None:
    """Sorted by query then song (stable diffs), written to a temporary file and renamed (never half a file)."""
    ordered = sorted(rows, key=lambda row: (row["query_id"], row["song_id"]))
    write_text_atomically(path, "".join(json.dumps({key: row[key] for key in ("query_id", "song_id", "grade",
                                                                               "artist", "title")},
                                                   ensure_ascii=False) + "\n" for row in ordered))


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run_configs(catalog_dir: str | Path | None, queries: dict[str, str], models: Sequence[str],
                rankings: Sequence[str], *, depth: int = DEFAULT_DEPTH) -> Runs:
    """Every configuration's top-``depth`` song ids per query (each model opened once; embeddings cached)."""
    runs: Runs = {}
    for model in models:
        recommender = Recommender.open(catalog_dir=catalog_dir, model=model)
        for ranking in rankings:
            runs[(model, ranking)] = {
                query_id: [song["song_id"] for song in
                           recommender.search_text(query, top_n=depth, ranking=ranking)["results"]]
                for query_id, query in queries.items()}
    return runs


def pool(runs: Runs, *, depth: int = DEFAULT_DEPTH) -> dict[str, set[str]]:
    """The union of every configuration's top-``depth`` songs, per query."""
    pooled: dict[str, set[str]] = {}
    for ranked in runs.values():
        for query_id, songs in ranked.items():
            pooled.setdefault(query_id, set()).update(songs[:depth])
    return pooled


def pool_for_configs(catalog_dir: str | Path | None, queries: dict[str, str], models: Sequence[str],
                     rankings: Sequence[str], *, depth: int = DEFAULT_DEPTH) -> dict[str, set[str]]:
    """Run every (model, ranking) configuration and pool their top-``depth`` songs per query."""
    return pool(run_configs(catalog_dir, queries, models, rankings, depth=depth), depth=depth)


def unjudged_pairs(pooled: dict[str, set[str]], judgments: dict[Pair, int], query_order: Sequence[str], *,
                   seed: int = DEFAULT_SEED) -> list[Pair]:
    """Pooled pairs without a grade, by query then a seeded shuffle (rank order would tell the judge who won)."""
    pairs = []
    for query_id in query_order:
        songs = sorted(song for song in pooled.get(query_id, ()) if (query_id, song) not in judgments)
        random.Random(f"{seed}:{query_id}").shuffle(songs)
        pairs += [(query_id, song) for song in songs]
    return pairs


def unjudged_command(*, catalog_dir: str | Path | None, queries: str | Path, judgments: str | Path,
                     models: Sequence[str], rankings: Sequence[str], depth: int = DEFAULT_DEPTH) -> str:
    """The exact command that lists what is missing (printed by ``training.evaluate`` when it refuses)."""
    parts = ["python", "-m", "training.judging", "unjudged"]
    if catalog_dir is not None:
        parts += ["--catalog", str(catalog_dir)]
    parts += ["--queries", str(queries), "--judgments", str(judgments), "--models", *models,
              "--rankings", *rankings, "--depth", str(depth)]
    return shlex.join(parts)


def song_texts(catalog: Catalog) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """``song_id → (artist, title)`` and ``song_id → lyrics`` (lines by position, joined by newlines)."""
    names = {song_id: (artist, title) for song_id, artist, title in
             zip(catalog.songs["song_id"], catalog.songs["artist"], catalog.songs["title"], strict=True)}
    lines = catalog.lines.sort_values(["song_id", "position"])
    lyrics = lines.groupby("song_id", sort=False)["text"].apply("\n".join).to_dict()
    return names, lyrics


def _load_catalog(catalog_dir: str | Path | None) -> Catalog:
    from recommender.service import default_catalog_dir

    return Catalog.load(catalog_dir if catalog_dir else default_catalog_dir())


def cmd_unjudged(args: argparse.Namespace) -> int:
    queries = load_queries(args.queries)
    judgments = load_judgments(args.judgments)
    pooled = pool_for_configs(args.catalog, queries, args.models, args.rankings, depth=args.depth)
    pairs = unjudged_pairs(pooled, judgments, list(queries), seed=args.seed)
    names, lyrics = song_texts(_load_catalog(args.catalog))
    rows = [{"query_id": query_id, "query": queries[query_id], "song_id": song_id, "artist": names[song_id][0],
             "title": names[song_id][1], "lyrics": lyrics.get(song_id, "")} for query_id, song_id in pairs]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                  encoding="utf-8")
    else:
        current = None
        for row in rows:
            if row["query_id"] != current:
                current = row["query_id"]
                print(f"\n=== {row['query_id']}: {row['query']}")
            print(f"\n--- {row['query_id']} {row['song_id']}  {row['artist']} — {row['title']}")
            print("\n".join(f"    {line}" for line in row["lyrics"].splitlines()))
    size = sum(len(songs) for songs in pooled.values())
    print(f"pool {size} pairs over {len(queries)} queries (depth {args.depth}): {size - len(pairs)} judged, "
          f"{len(pairs)} unjudged" + (f" → {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    existing = load_judgment_rows(args.judgments)
    known_queries = set(load_queries(args.queries)) if args.queries else None
    names = song_texts(_load_catalog(args.catalog))[0] if args.catalog else None
    incoming: dict[Pair, dict] = {}
    errors = []
    for number, item in _read_jsonl(args.input):
        where = f"{args.input}:{number}"
        query_id, song_id = item.get("query_id"), item.get("song_id")
        if not isinstance(query_id, str) or not isinstance(song_id, str):
            errors.append(f"{where}: needs string query_id and song_id")
            continue
        try:
            grade = check_grade(item.get("grade"))
        except JudgingError as error:
            errors.append(f"{where}: {error}")
            continue
        if known_queries is not None and query_id not in known_queries:
            errors.append(f"{where}: query_id {query_id!r} is not in {args.queries}")
            continue
        if names is not None and song_id not in names:
            errors.append(f"{where}: song_id {song_id!r} is not in the catalog")
            continue
        artist, title = names[song_id] if names is not None else (item.get("artist", ""), item.get("title", ""))
        previous = incoming.get((query_id, song_id))
        if previous is not None and previous["grade"] != grade:
            errors.append(f"{where}: ({query_id}, {song_id}) graded {previous['grade']} earlier in the input")
            continue
        incoming[(query_id, song_id)] = {"query_id": query_id, "song_id": song_id, "grade": grade,
                                         "artist": str(artist), "title": str(title)}
    if errors:
        print("error: nothing recorded:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 2
    conflicts = [(pair, existing[pair]["grade"], row["grade"]) for pair, row in incoming.items()
                 if pair in existing and existing[pair]["grade"] != row["grade"]]
    if conflicts and not args.overwrite:
        print(f"error: nothing recorded: {len(conflicts)} pairs are already judged with another grade "
              "(--overwrite replaces them):\n  " + "\n  ".join(
                  f"{q} {s}: judged {old}, input {new}" for (q, s), old, new in conflicts), file=sys.stderr)
        return 1
    added = sum(pair not in existing for pair in incoming)
    merged = {**existing, **incoming}
    write_judgments(args.judgments, merged.values())
    print(f"recorded {len(incoming)} judgments into {args.judgments}: {added} new, {len(conflicts)} changed, "
          f"{len(incoming) - added - len(conflicts)} unchanged; {len(merged)} in all")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.judging", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    unjudged = commands.add_parser("unjudged", help="list the pooled (query, song) pairs still to judge, blind")
    unjudged.add_argument("--catalog", help="catalog directory (default: the embedded default catalog)")
    unjudged.add_argument("--queries", required=True, help="JSONL of {query_id, query}")
    unjudged.add_argument("--judgments", required=True, help="JSONL of judgments (may not exist yet)")
    unjudged.add_argument("--models", nargs="+", required=True)
    unjudged.add_argument("--rankings", nargs="+", required=True, choices=RANKING_NAMES)
    unjudged.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="top songs pooled per configuration")
    unjudged.add_argument("--out", help="write JSONL (with lyrics) here instead of readable text to stdout")
    unjudged.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the per-query shuffle")
    unjudged.set_defaults(handler=cmd_unjudged)
    record = commands.add_parser("record", help="merge {query_id, song_id, grade} rows into the judgments")
    record.add_argument("--judgments", required=True)
    record.add_argument("--input", required=True, help="JSONL of {query_id, song_id, grade}; extra keys allowed")
    record.add_argument("--queries", help="check every query_id against this queries file")
    record.add_argument("--catalog", help="fill artist/title from this catalog (default: from the input rows)")
    record.add_argument("--overwrite", action="store_true", help="replace pairs already judged with another grade")
    record.set_defaults(handler=cmd_record)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "depth", DEFAULT_DEPTH) < 1:
        print("error: --depth must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (RecommenderError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
