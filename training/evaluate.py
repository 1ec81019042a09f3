"""Evaluate models on held-out songs: line retrieval, the whole seed pipeline, BM25, paired bootstrap CIs.

    python -m training.evaluate --catalog DIR --models A B ... [--split test|all] [--mood-queries FILE] --out DIR
                                [--visitor-queries FILE | --no-visitor-queries]
                                [--queries FILE [--judgments FILE] [--rankings R ...] [--user-catalog DIR]] [--json]

* line retrieval — each held-out annotation queries ALL index rows (distinct song lines) of the catalog;
  relevant = the lines it annotates: MRR@10, NDCG@10, Recall@10, Recall@100, Accuracy@1;
* pipeline — the same annotation through the seed ranking (top-100 lines, threshold, sum per song): Recall@10 and
  MRR@10 of its song;
* mood queries (optional, ``--mood-queries``) — short visitor-style queries with songs judged relevant from their
  lyrics by a person: song NDCG@10, MRR@10 and Recall@10 through the seed ranking;
* user-style queries (optional, ``--queries``) — visitor queries run by every (model, ranking) configuration,
  graded 0/1/2 from the lyrics over the pooled top 10 (``training.judging``, ``training/eval/RUBRIC.md``):
  user nDCG@10 (gain = grade, ideal from every judged song of the query), P@10 (grade ≥ 1) and P2@10 (grade 2),
  with paired-bootstrap CIs against the first configuration. Refuses (exit 3) while a pooled pair is unjudged;
* visitor-style queries of held-out songs (``--visitor-queries``, default
  training/eval/visitor_queries_heldout.jsonl) — short mood/scene queries written for dev/test songs from their
  lyrics (``training.visitor_queries``); never trained on. Each must find its own song: Recall@10 and MRR@10 under
  the seed ranking and under the default ranking. An automatic check of the visitor side on unseen songs, beside
  the judged user-style set (one song counts as right, so it undercounts other relevant songs);
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
from recommender.ranking import RANKING_NAMES, rank_songs
from recommender.service import Recommender
from space_config import SETTINGS
from training.judging import (
    DEFAULT_DEPTH,
    UnjudgedPairsError,
    config_label,
    load_judgments,
    load_queries,
    pool,
    run_configs,
    unjudged_command,
    unjudged_pairs,
)
from training.pairs import DEFAULT_SEED, assign_splits, clean_pairs, read_splits
from training.visitor_queries import read_rows as read_visitor_rows

logger = logging.getLogger(__name__)

LINE_METRICS = ("line_mrr@10", "line_ndcg@10", "line_recall@10", "line_recall@100", "line_accuracy@1")
SONG_METRICS = ("song_recall@10", "song_mrr@10")
MOOD_METRICS = ("mood_ndcg@10", "mood_mrr@10", "mood_recall@10")
VISITOR_RANKINGS = tuple(dict.fromkeys(("seed", SETTINGS.default_ranking)))
VISITOR_METRICS = tuple(f"visitor_{ranking}_{metric}" for ranking in VISITOR_RANKINGS
                        for metric in ("recall@10", "mrr@10"))
DEFAULT_VISITOR_EVAL = Path(__file__).resolve().parent / "eval" / "visitor_queries_heldout.jsonl"
USER_METRICS = ("user_ndcg@10", "user_p@10", "user_p2@10")
BOOTSTRAP_SAMPLES = 2000
_TOKEN = re.compile(r"[\w']+")


def default_visitor_eval() -> Path | None:
    """The held-out visitor queries evaluated by default, when the repository has them."""
    return DEFAULT_VISITOR_EVAL if DEFAULT_VISITOR_EVAL.is_file() else None


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


def user_metrics(ranked_songs: list[str], grades: dict[str, int]) -> dict[str, float]:
    """User-style metrics of one query's ranked song ids against its judged grades (the whole judged pool).

    nDCG@10 uses the grade itself as gain (2 is worth twice 1, not three times) and, as ideal, the best 10 grades
    judged for the query by any configuration; P@10 and P2@10 divide by 10 even when fewer songs came back.
    """
    top = ranked_songs[:DEFAULT_DEPTH]
    dcg = sum(grades.get(song, 0) / math.log2(rank + 2) for rank, song in enumerate(top))
    ideal = sorted(grades.values(), reverse=True)[:DEFAULT_DEPTH]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return {"user_ndcg@10": dcg / idcg if idcg else 0.0,
            "user_p@10": sum(grades.get(song, 0) >= 1 for song in top) / DEFAULT_DEPTH,
            "user_p2@10": sum(grades.get(song, 0) == 2 for song in top) / DEFAULT_DEPTH}


def evaluate_user(catalog_dir: str | Path | None, models: list[str], rankings: list[str], *, queries_file: str | Path,
                  judgments_file: str | Path) -> dict:
    """User-style metrics of every model × ranking configuration, with CIs against the first one.

    Deltas: every configuration vs the first, and every model vs the first model under the same ranking (what the
    push gate reads).

    Raises:
        UnjudgedPairsError: A pooled (query, top-10 song) pair has no grade; it carries the listing command.
    """
    queries = load_queries(queries_file)
    judgments = load_judgments(judgments_file)
    runs = run_configs(catalog_dir, queries, models, rankings, depth=DEFAULT_DEPTH)
    pooled = pool(runs, depth=DEFAULT_DEPTH)
    missing = unjudged_pairs(pooled, judgments, list(queries))
    if missing:
        raise UnjudgedPairsError(missing, unjudged_command(catalog_dir=catalog_dir, queries=queries_file,
                                                           judgments=judgments_file, models=models,
                                                           rankings=rankings))
    grades: dict[str, dict[str, int]] = {query_id: {} for query_id in queries}
    for (query_id, song_id), grade in judgments.items():
        if query_id in grades:
            grades[query_id][song_id] = grade
    per_config: dict[str, dict[str, np.ndarray]] = {}
    for (model, ranking), ranked in runs.items():
        values = [user_metrics(ranked[query_id], grades[query_id]) for query_id in queries]
        per_config[config_label(model, ranking)] = {name: np.array([v[name] for v in values], dtype=np.float64)
                                                    for name in USER_METRICS}
    reference = config_label(models[0], rankings[0])
    comparisons = [(label, reference) for label in per_config if label != reference]
    comparisons += [(config_label(model, ranking), config_label(models[0], ranking))
                    for ranking in rankings[1:] for model in models[1:]]
    deltas = {f"{label} vs {base}": {name: paired_bootstrap(per_config[base][name], per_config[label][name])
                                     for name in USER_METRICS} for label, base in comparisons}
    size = sum(len(songs) for songs in pooled.values())
    return {"configs": {label: {name: float(values.mean()) if len(values) else float("nan")
                                for name, values in arrays.items()} for label, arrays in per_config.items()},
            "deltas": deltas, "models": list(models), "rankings": list(rankings), "reference": reference,
            "pool": {"queries": len(queries), "depth": DEFAULT_DEPTH, "pairs": size,
                     "judgments": str(judgments_file), "queries_file": str(queries_file)}}


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


def load_visitor_queries(path: str | Path, catalog: Catalog, *, split: str,
                         song_split: dict[str, str]) -> list[tuple[str, int]]:
    """(query, song position) for the file's rows whose song is in ``catalog`` and in ``split`` (``all``: any)."""
    position = {song_id: i for i, song_id in enumerate(catalog.songs["song_id"])}
    return [(row["query"], position[row["song_id"]]) for row in read_visitor_rows(path)
            if row["song_id"] in position and (split == "all" or song_split.get(row["song_id"]) == split)]


def evaluate_visitors(recommender: Recommender, visitors: list[tuple[str, int]]) -> dict:
    """Per-query Recall@10 / MRR@10 of each visitor query's own song, under the seed and the default ranking."""
    per_query: dict[str, list[float]] = {name: [] for name in VISITOR_METRICS}
    vectors = recommender.encoder.encode_queries([text for text, _ in visitors])
    for vector, (_, song) in zip(vectors, visitors, strict=True):
        for ranking in VISITOR_RANKINGS:
            hits = recommender.rank(vector, allowed_songs=None, top_n=10, ranking=ranking)
            found = song_metrics([hit.song_index for hit in hits], song)
            per_query[f"visitor_{ranking}_recall@10"].append(found["song_recall@10"])
            per_query[f"visitor_{ranking}_mrr@10"].append(found["song_mrr@10"])
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
             mood_queries: str | None = None, mood_catalog_dir: str | None = None, bm25: bool = True,
             user_queries: str | Path | None = None, judgments: str | Path | None = None,
             rankings: list[str] | tuple[str, ...] = ("seed",), user_catalog_dir: str | Path | None = None,
             visitor_queries: str | Path | None = None) -> dict:
    """Run every evaluation; returns ``{"models": {name: {metric: mean}}, "deltas": {...}, "counts": {...}}``
    plus ``"user"`` (see ``evaluate_user``) when ``user_queries`` is given.

    The user-style block runs first so that unjudged pairs stop the evaluation before the long part.
    ``judgments`` defaults to ``judgments.jsonl`` next to ``user_queries``; ``user_catalog_dir`` to ``catalog_dir``.

    Raises:
        UnjudgedPairsError: With ``user_queries``, while any pooled pair is unjudged.
    """
    user = None
    if user_queries:
        user = evaluate_user(user_catalog_dir or catalog_dir, list(models), list(rankings), queries_file=user_queries,
                             judgments_file=judgments or default_judgments(user_queries))
    catalog = Catalog.load(catalog_dir)
    song_split = read_splits(splits_file) if splits_file else assign_splits(catalog, seed=DEFAULT_SEED)
    per_model: dict[str, dict[str, np.ndarray]] = {}
    queries = None
    visitors = load_visitor_queries(visitor_queries, catalog, split=split, song_split=song_split) \
        if visitor_queries else []
    for model in models:
        recommender = Recommender.open(catalog_dir=catalog_dir, model=model)
        if queries is None:
            queries = build_queries(catalog, recommender, split=split, song_split=song_split)
            logger.info("%d %s queries over %d index rows", len(queries.texts), split, len(recommender.index))
            if bm25:
                per_model["bm25"] = evaluate_bm25(recommender, queries)
        per_model[model] = evaluate_dense(recommender, queries)
        if visitors:
            per_model[model].update(evaluate_visitors(recommender, visitors))
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
              "mood_queries": len(per_model[reference].get("mood_mrr@10", [])), "visitor_queries": len(visitors)}
    result = {"models": metrics, "deltas": deltas, "counts": counts}
    if user is not None:
        result["user"] = user
    return result


def default_judgments(user_queries: str | Path) -> Path:
    """Judgments live next to their queries (``training/eval/judgments.jsonl``)."""
    return Path(user_queries).parent / "judgments.jsonl"


def user_report_lines(user: dict) -> list[str]:
    """Markdown table of the user-style metrics per configuration, then the CIs of the differences."""
    pool_info = user["pool"]
    lines = ["", f"## User-style queries ({pool_info['queries']} queries, {pool_info['pairs']} pooled pairs judged "
             f"0/1/2 from the lyrics, top {pool_info['depth']})", "",
             "| model | ranking | " + " | ".join(USER_METRICS) + " |", "|---|---|" + "---|" * len(USER_METRICS)]
    for label, values in user["configs"].items():
        model, _, ranking = label.rpartition(" | ")
        lines.append(f"| {model} | {ranking} | " + " | ".join(f"{values[m]:.4f}" for m in USER_METRICS) + " |")
    for comparison, deltas in user["deltas"].items():
        lines += ["", f"**{comparison}** (mean difference, 95% paired-bootstrap CI):", ""]
        lines += [f"- {m}: {d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" for m, d in deltas.items()]
    return lines


def ablation_lines(result: dict) -> list[str]:
    """Both yardsticks side by side, one row per model (each model is one recipe): annotation→line MRR@10 and
    song Recall@10 on held-out songs, and user-style nDCG@10 under every ranking, each with its ratio to the first
    model (the base), so what an ingredient did on one yardstick is read next to what it did on the other."""
    user = result.get("user")
    names = [name for name in (user or {}).get("models", []) if name in result["models"]]  # not BM25
    if len(names) < 2:
        return []
    rankings = user["rankings"]
    base = result["models"][names[0]]
    base_user = {ranking: user["configs"][config_label(names[0], ranking)]["user_ndcg@10"] for ranking in rankings}
    yardsticks = [m for m in ("line_mrr@10", "song_recall@10", "visitor_seed_recall@10") if m in base]
    header = ["model", *yardsticks, *(f"user nDCG@10 ({ranking})" for ranking in rankings)]
    lines = ["", "## Ablation: both yardsticks per model", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for name in names:
        cells = [name]
        for metric in yardsticks:
            value = result["models"][name].get(metric)
            cells.append("—" if value is None else f"{value:.4f} (×{value / base[metric]:.2f})" if base.get(metric)
                         else f"{value:.4f}")
        for ranking in rankings:
            value = user["configs"][config_label(name, ranking)]["user_ndcg@10"]
            cells.append(f"{value:.4f} ({value - base_user[ranking]:+.4f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(result: dict, out: str | Path) -> None:
    """metrics.json, a markdown table with CIs, and a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    names = list(result["models"])
    metrics = [m for m in (*LINE_METRICS, *SONG_METRICS, *MOOD_METRICS, *VISITOR_METRICS)
               if any(m in result["models"][n] for n in names)]
    counts = result["counts"]
    mood_note = f", {counts['mood_queries']} mood queries" if counts["mood_queries"] else ""
    if counts.get("visitor_queries"):
        mood_note += f", {counts['visitor_queries']} visitor-style queries of held-out songs"
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
    user = result.get("user")
    if user:
        lines += user_report_lines(user)
        lines += ablation_lines(result)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    if user:
        figure, (axis, user_axis) = plt.subplots(1, 2, figsize=(max(8, len(metrics) * 1.2) + 5, 4),
                                                 gridspec_kw={"width_ratios": [max(len(metrics), 1), 3]})
        labels = list(user["configs"])
        user_width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            model, _, ranking = label.rpartition(" | ")
            user_axis.bar(np.arange(len(USER_METRICS)) + i * user_width,
                          [user["configs"][label][m] for m in USER_METRICS], user_width,
                          label=f"{Path(model).name or model} | {ranking}")
        user_axis.set_xticks(np.arange(len(USER_METRICS)) + user_width * (len(labels) - 1) / 2, USER_METRICS,
                             rotation=30, ha="right")
        user_axis.set_ylim(0, 1)
        user_axis.legend(fontsize="small")
        user_axis.set_title("User-style queries (judged pool)")
    else:
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
    parser.add_argument("--queries", help="user-style queries (JSONL of {query_id, query}) judged over the pool")
    parser.add_argument("--judgments", help="judgments of --queries (default: judgments.jsonl next to it)")
    parser.add_argument("--rankings", nargs="+", default=["seed"], choices=RANKING_NAMES,
                        help="rankings compared on --queries; each model × ranking is a configuration, the first "
                             "model with the first ranking is the reference (default: seed)")
    parser.add_argument("--user-catalog", help="catalog searched by --queries (default: --catalog)")
    parser.add_argument("--visitor-queries", metavar="JSONL",
                        default=default_visitor_eval(),
                        help="visitor-style queries of held-out songs (default: "
                             "training/eval/visitor_queries_heldout.jsonl when it exists)")
    parser.add_argument("--no-visitor-queries", dest="visitor_queries", action="store_const", const=None)
    parser.add_argument("--no-bm25", dest="bm25", action="store_false")
    parser.add_argument("--out", required=True)
    parser.add_argument("--json", action="store_true", help="print metrics.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(args.catalog, args.models, split=args.split, splits_file=args.splits,
                          mood_queries=args.mood_queries, mood_catalog_dir=args.mood_catalog, bm25=args.bm25,
                          user_queries=args.queries, judgments=args.judgments, rankings=args.rankings,
                          user_catalog_dir=args.user_catalog, visitor_queries=args.visitor_queries)
    except UnjudgedPairsError as error:
        print(f"error: refusing to score the user-style queries: {len(error.pairs)} pooled (query, top-10 song) "
              f"pairs are unjudged (judge them first, see training/eval/RUBRIC.md); list them with:\n"
              f"  {error.command}", file=sys.stderr)
        return 3
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
