"""Evaluate models on held-out songs: line retrieval, the whole seed pipeline, BM25, paired bootstrap CIs.

    python -m training.evaluate --catalog DIR --models A B ... [--split test|all] [--mood-queries FILE] --out DIR
                                [--json]

* line retrieval — each held-out annotation queries ALL index rows (distinct song lines) of the catalog;
  relevant = the lines it annotates: MRR@10, NDCG@10, Recall@10, Recall@100, Accuracy@1;
* pipeline — the same annotation through the seed ranking (top-100 lines, threshold, sum per song): Recall@10 and
  MRR@10 of its song;
* mood queries (optional, ``--mood-queries``) — short visitor-style queries with songs judged relevant from their
  lyrics by a person: song NDCG@10, MRR@10 and Recall@10 through the seed ranking;
* BM25 (rank_bm25) over the same rows, for reference (its pipeline sums the top-100 BM25 scores per song);
* paired bootstrap 95% CIs of every metric's difference against the first model.

Writes ``metrics.json``, ``report.md`` and ``chart.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recommender.catalog import Catalog
from recommender.errors import RecommenderError
from recommender.ranking import rank_songs
from recommender.service import Recommender
from space_config import SETTINGS
from training.pairs import DEFAULT_SEED, assign_splits, clean_pairs, read_splits

logger = logging.getLogger(__name__)

LINE_METRICS = ("line_mrr@10", "line_ndcg@10", "line_recall@10", "line_recall@100", "line_accuracy@1")
SONG_METRICS = ("song_recall@10", "song_mrr@10")
MOOD_METRICS = ("mood_ndcg@10", "mood_mrr@10", "mood_recall@10")
BOOTSTRAP_SAMPLES = 2000
_TOKEN = re.compile(r"[\w']+")


@dataclass
class Queries:
    """Held-out annotation queries and what is relevant to each (as index rows and as a song position)."""

    texts: list[str]
    relevant_rows: list[np.ndarray]
    song_positions: np.ndarray


def rank_metrics(ranked: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """Line metrics for one query from its ranked rows (best first, ≥ 100 long when possible).

    Binary relevance; NDCG's ideal DCG puts all relevant rows first.
    """
    hits = np.isin(ranked[:100], relevant)
    n_relevant = max(len(relevant), 1)
    first = int(np.argmax(hits)) if hits.any() else None
    gains = hits[:10] / np.log2(np.arange(2, 12))[: len(hits[:10])]
    ideal = (1 / np.log2(np.arange(2, 12)))[: min(n_relevant, 10)].sum()
    return {
        "line_mrr@10": 1.0 / (first + 1) if first is not None and first < 10 else 0.0,
        "line_ndcg@10": float(gains.sum() / ideal),
        "line_recall@10": float(hits[:10].sum() / n_relevant),
        "line_recall@100": float(hits.sum() / n_relevant),
        "line_accuracy@1": float(bool(hits[:1].any())),
    }


def song_metrics(ranked_songs: list[int], target: int) -> dict[str, float]:
    """Recall@10 and MRR@10 of one target song in a ranked song list."""
    top = ranked_songs[:10]
    position = top.index(target) if target in top else None
    return {"song_recall@10": float(position is not None),
            "song_mrr@10": 1.0 / (position + 1) if position is not None else 0.0}


def graded_metrics(ranked_songs: list[int], grades: dict[int, int]) -> dict[str, float]:
    """NDCG@10 (graded), MRR@10 and Recall@10 of a ranked song list against judged songs."""
    top = ranked_songs[:10]
    dcg = sum((2 ** grades.get(song, 0) - 1) / math.log2(rank + 2) for rank, song in enumerate(top))
    ideal_gains = sorted(grades.values(), reverse=True)[:10]
    idcg = sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(ideal_gains))
    first = next((rank for rank, song in enumerate(top) if song in grades), None)
    return {"mood_ndcg@10": dcg / idcg if idcg else 0.0,
            "mood_mrr@10": 1.0 / (first + 1) if first is not None else 0.0,
            "mood_recall@10": sum(song in grades for song in top) / len(grades)}


def build_queries(catalog: Catalog, recommender: Recommender, *, split: str, song_split: dict[str, str]) -> Queries:
    """One query per kept pair of the chosen split; relevant rows are the index rows of its annotated lines."""
    pairs, _ = clean_pairs(catalog)
    if split != "all":
        pairs = pairs[pairs["song_id"].map(song_split) == split]
    pairs = pairs.drop_duplicates("pair_id")
    index = recommender.index
    song_position = {song_id: i for i, song_id in enumerate(catalog.songs["song_id"])}
    text_position = {text: i for i, text in enumerate(index.texts)}
    row_of = {(int(song), int(text)): row for row, (song, text) in enumerate(zip(index.row_song, index.row_text,
                                                                                  strict=True))}
    line_text = dict(zip(catalog.lines["line_id"], catalog.lines["text"], strict=True))
    relevant = []
    for song_id, line_ids in zip(pairs["song_id"], pairs["fragment_lines"], strict=True):
        song = song_position[song_id]
        relevant.append(np.unique([row_of[(song, text_position[line_text[line_id]])] for line_id in line_ids]))
    return Queries(pairs["annotation"].tolist(), relevant,
                   np.array([song_position[s] for s in pairs["song_id"]], dtype=np.int64))


def evaluate_dense(recommender: Recommender, queries: Queries) -> dict:
    """Per-query metric arrays for one embedding model."""
    per_query: dict[str, list[float]] = {name: [] for name in (*LINE_METRICS, *SONG_METRICS)}
    vectors = recommender.encoder.encode_queries(queries.texts)
    for vector, relevant, song in zip(vectors, queries.relevant_rows, queries.song_positions, strict=True):
        # One scan serves both: the top-100 rows are the line ranking and the seed pipeline's candidates.
        rows, row_scores = recommender.index.search(vector, k=SETTINGS.top_k_lines)
        for name, value in rank_metrics(rows, relevant).items():
            per_query[name].append(value)
        hits = rank_songs(rows, row_scores, recommender.index.row_song, threshold=recommender.threshold, top_n=10)
        for name, value in song_metrics([hit.song_index for hit in hits], int(song)).items():
            per_query[name].append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}


def evaluate_mood(recommender: Recommender, mood: list[tuple[str, dict[int, int]]]) -> dict:
    """Per-query graded song metrics of judged mood queries, through the public search path."""
    per_query: dict[str, list[float]] = {name: [] for name in MOOD_METRICS}
    positions = {song_id: i for i, song_id in enumerate(recommender.catalog.songs["song_id"])}
    for text, grades in mood:
        result = recommender.search_text(text, top_n=10)
        for name, value in graded_metrics([positions[s["song_id"]] for s in result["results"]], grades).items():
            per_query[name].append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}


def evaluate_bm25(recommender: Recommender, queries: Queries) -> dict:
    """BM25 over the same index rows (lexical reference)."""
    from rank_bm25 import BM25Okapi

    row_tokens = [_TOKEN.findall(recommender.index.texts[int(t)].lower()) for t in recommender.index.row_text]
    bm25 = BM25Okapi(row_tokens)
    per_query: dict[str, list[float]] = {name: [] for name in (*LINE_METRICS, *SONG_METRICS)}
    for text, relevant, song in zip(queries.texts, queries.relevant_rows, queries.song_positions, strict=True):
        scores = torch.from_numpy(bm25.get_scores(_TOKEN.findall(text.lower())).astype(np.float32))
        top = torch.topk(scores, min(100, len(scores)))
        for name, value in rank_metrics(top.indices.numpy(), relevant).items():
            per_query[name].append(value)
        song_scores: dict[int, float] = {}
        for row, score in zip(top.indices.tolist(), top.values.tolist(), strict=True):
            owner = int(recommender.index.row_song[row])
            song_scores[owner] = song_scores.get(owner, 0.0) + score
        ranked = sorted(song_scores, key=lambda s: (-song_scores[s], s))
        for name, value in song_metrics(ranked, int(song)).items():
            per_query[name].append(value)
    return {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}


def paired_bootstrap(baseline: np.ndarray, other: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = DEFAULT_SEED) -> dict[str, float]:
    """Mean difference (other − baseline) with a 95% percentile CI from resampling queries with replacement."""
    if len(baseline) == 0:
        return {"delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "ratio": float("nan")}
    differences = other - baseline
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(samples, len(differences)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    base_mean = float(baseline.mean())
    return {"delta": float(differences.mean()), "ci_low": float(low), "ci_high": float(high),
            "ratio": float(other.mean() / base_mean) if base_mean else float("nan")}


def load_mood_queries(path: str | Path, catalog: Catalog) -> list[tuple[str, dict[int, int]]]:
    """Judged mood queries whose songs are in ``catalog`` (by artist and title)."""
    position = {(a.lower(), t.lower()): i for i, (a, t) in enumerate(zip(catalog.songs["artist"],
                                                                         catalog.songs["title"], strict=True))}
    queries = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            grades = {position[(r["artist"].lower(), r["title"].lower())]: int(r["grade"])
                      for r in item["relevant"] if (r["artist"].lower(), r["title"].lower()) in position}
            if grades:
                queries.append((item["query"], grades))
    return queries


def evaluate(catalog_dir: str | Path, models: list[str], *, split: str = "test", splits_file: str | None = None,
             mood_queries: str | None = None, mood_catalog_dir: str | None = None, bm25: bool = True) -> dict:
    """Run every evaluation; returns ``{"models": {name: {metric: mean}}, "deltas": {...}, "counts": {...}}``."""
    catalog = Catalog.load(catalog_dir)
    song_split = read_splits(splits_file) if splits_file else assign_splits(catalog, seed=DEFAULT_SEED)
    per_model: dict[str, dict[str, np.ndarray]] = {}
    queries = None
    for model in models:
        recommender = Recommender.open(catalog_dir=catalog_dir, model=model)
        if queries is None:
            queries = build_queries(catalog, recommender, split=split, song_split=song_split)
            logger.info("%d %s queries over %d index rows", len(queries.texts), split, len(recommender.index))
            if bm25:
                per_model["bm25"] = evaluate_bm25(recommender, queries)
        per_model[model] = evaluate_dense(recommender, queries)
        if mood_queries:
            mood_recommender = Recommender.open(catalog_dir=mood_catalog_dir, model=model)
            per_model[model].update(evaluate_mood(mood_recommender, load_mood_queries(mood_queries,
                                                                                      mood_recommender.catalog)))
    reference = models[0]
    metrics = {name: {metric: float(values.mean()) if len(values) else float("nan")
                      for metric, values in arrays.items()} for name, arrays in per_model.items()}
    deltas = {f"{name} vs {reference}": {metric: paired_bootstrap(per_model[reference][metric], values)
                                         for metric, values in arrays.items() if metric in per_model[reference]}
              for name, arrays in per_model.items() if name != reference}
    counts = {"queries": len(queries.texts) if queries else 0, "split": split,
              "mood_queries": len(per_model[reference].get("mood_mrr@10", []))}
    return {"models": metrics, "deltas": deltas, "counts": counts}


def write_report(result: dict, out: str | Path) -> None:
    """metrics.json, a markdown table with CIs, and a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    names = list(result["models"])
    metrics = [m for m in (*LINE_METRICS, *SONG_METRICS, *MOOD_METRICS) if any(m in result["models"][n]
                                                                              for n in names)]
    counts = result["counts"]
    mood_note = f", {counts['mood_queries']} mood queries" if counts["mood_queries"] else ""
    lines = [f"# Evaluation ({counts['split']} split, {counts['queries']} annotation queries{mood_note})",
             "", "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name in names:
        cells = [f"{result['models'][name].get(m, float('nan')):.4f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for comparison, deltas in result["deltas"].items():
        lines += ["", f"**{comparison}** (mean difference, 95% paired-bootstrap CI, ratio):", ""]
        for metric in metrics:
            if metric in deltas:
                d = deltas[metric]
                lines.append(f"- {metric}: {d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] "
                             f"×{d['ratio']:.2f}")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(max(8, len(metrics) * 1.2), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        axis.bar(np.arange(len(metrics)) + i * width, [result["models"][name].get(m, 0) for m in metrics], width,
                 label=Path(name).name or name)
    axis.set_xticks(np.arange(len(metrics)) + width * (len(names) - 1) / 2, metrics, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.legend()
    axis.set_title("Held-out evaluation")
    figure.tight_layout()
    figure.savefig(out / "chart.png", dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="first one is the reference for the deltas")
    parser.add_argument("--split", choices=("test", "dev", "train", "all"), default="test")
    parser.add_argument("--splits", help="splits.json written by training (default: the seeded artist split)")
    parser.add_argument("--mood-queries", help="judged mood queries (JSONL) over --mood-catalog")
    parser.add_argument("--mood-catalog", help="catalog of the mood queries (default: the embedded default)")
    parser.add_argument("--no-bm25", dest="bm25", action="store_false")
    parser.add_argument("--out", required=True)
    parser.add_argument("--json", action="store_true", help="print metrics.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(args.catalog, args.models, split=args.split, splits_file=args.splits,
                          mood_queries=args.mood_queries, mood_catalog_dir=args.mood_catalog, bm25=args.bm25)
    except RecommenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(result, args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
