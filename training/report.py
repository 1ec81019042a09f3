"""The model card a fine-tuned model carries, and the gate that lets only a winner be pushed."""

from __future__ import annotations

from pathlib import Path

from training.judging import config_label

GATE_METRICS = ("line_mrr@10", "song_recall@10")
USER_GATE_METRIC = "user_ndcg@10"


def user_gate(result: dict, *, candidate: str, incumbent: str) -> tuple[bool, str]:
    """No significant user-style loss: under every evaluated ranking, the CI of the candidate's user nDCG@10
    difference against the incumbent (same ranking) must not lie entirely below 0.

    Annotation metrics can improve while what visitors type gets worse (annotations are explanations, not
    queries), so a judged visitor-query loss blocks a push. Without a ``"user"`` block there is nothing to check.
    """
    user = result.get("user")
    if not user:
        return True, ""
    parts = []
    for ranking in user["rankings"]:
        key = f"{config_label(candidate, ranking)} vs {config_label(incumbent, ranking)}"
        delta = user["deltas"].get(key, {}).get(USER_GATE_METRIC)
        if delta is None:
            return False, f"no user-style comparison {key} in the evaluation"
        summary = (f"user nDCG@10 ({ranking}) {delta['delta']:+.4f} "
                   f"[{delta['ci_low']:+.4f}, {delta['ci_high']:+.4f}]")
        if delta["ci_high"] < 0:
            return False, (f"significant user-style loss against {incumbent}: {summary} (the CI lies entirely "
                           f"below 0 on {user['pool']['queries']} judged visitor queries)")
        parts.append(summary)
    return True, "; ".join(parts)


def push_decision(result: dict, *, candidate: str, incumbent: str) -> tuple[bool, str]:
    """Whether ``candidate`` beats ``incumbent`` on held-out songs (``result`` from ``training.evaluate``).

    A winner improves line MRR@10 with a 95% CI entirely above 0, does not lose song Recall@10 (its CI's
    upper end stays above 0) and, when the evaluation carries user-style metrics, shows no significant loss of
    user nDCG@10 (``user_gate``). Anything else is refused with the numbers that decided it.
    """
    deltas = result["deltas"].get(f"{candidate} vs {incumbent}")
    if deltas is None:
        return False, f"no comparison of {candidate} against {incumbent} in the evaluation"
    line, song = deltas["line_mrr@10"], deltas["song_recall@10"]
    summary = (f"line MRR@10 {line['delta']:+.4f} [{line['ci_low']:+.4f}, {line['ci_high']:+.4f}], "
               f"song Recall@10 {song['delta']:+.4f} [{song['ci_low']:+.4f}, {song['ci_high']:+.4f}]")
    if line["ci_low"] <= 0:
        return False, f"not better than {incumbent}: {summary} (line MRR@10 CI must lie above 0)"
    if song["ci_high"] <= 0:
        return False, f"loses songs against {incumbent}: {summary}"
    user_ok, user_summary = user_gate(result, candidate=candidate, incumbent=incumbent)
    if not user_ok:
        return False, f"{user_summary}; {summary}"
    return True, f"beats {incumbent}: {summary}" + (f", {user_summary}" if user_summary else "")


def model_card_section(summary: dict, result: dict | None) -> str:
    """Markdown: base model, data, split sizes, metrics vs base with CIs, intended use, limitations."""
    args = summary.get("args", {})
    per_pair = args.get("mined_negatives_per_pair", 1)
    mined = ((" and a line of another training song mined with the base model" if per_pair == 1 else
              f" and {per_pair} lines of other training songs mined with the base model")
             if args.get("mined_negatives") else "")
    lines = [
        "## Lyrics meaning search: fine-tuning and evaluation",
        "",
        f"- **Base model:** `{summary['base_model_id']}` (requested as `{summary['base']}`)",
        "- **Data:** (Genius community annotation → annotated lyric line) pairs from an ingested catalog; "
        "annotations that only restate the line, very short ones and section headers are filtered out "
        f"({summary['pair_filter']}).",
        f"- **Split (by artist, seeded hash; no song or artist in two splits):** pairs {summary['split_pairs']}, "
        f"songs {summary['split_songs']}; training rows per dataset: {summary['train_rows']}.",
        *([f"- **Visitor-style queries:** short mood/scene queries written for train-split songs from their lyrics, "
           f"each paired with the lines that carry it ({summary['visitor_queries']})."]
          if summary.get("visitor_queries") else []),
        f"- **Loss:** MultipleNegativesRankingLoss (annotation batches with a same-song hard negative{mined}; "
        "visitor-query batches with in-batch negatives) and the NO_DUPLICATES batch sampler; best checkpoint by "
        "dev annotation MRR@10, or by the mean dev nDCG@10 of annotations and dev-song visitor queries when there "
        "are some.",
        *(["- **Model soup:** the weights are the element-wise mean of the multi-task model and an expert trained "
           "on the annotation pairs alone, both from the base (`--annotation-expert`)."]
          if summary.get("soup") else []),
        "",
    ]
    if result:
        models = list(result["models"])
        metrics = [m for m in next(iter(result["deltas"].values()), {})]
        lines += [f"### Held-out test songs ({result['counts']['queries']} annotation queries)", "",
                  "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for name in models:
            lines.append(f"| {Path(name).name or name} | " + " | ".join(
                f"{result['models'][name].get(m, float('nan')):.4f}" for m in metrics) + " |")
        for comparison, deltas in result["deltas"].items():
            lines += ["", f"{comparison}: " + "; ".join(
                f"{m} {d['delta']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" for m, d in deltas.items())]
        user = result.get("user")
        if user:
            lines += ["", f"### Judged visitor-style queries ({user['pool']['queries']} queries, "
                      f"{user['pool']['pairs']} pooled songs graded 0/1/2 from the lyrics)", "",
                      "| model | ranking | user_ndcg@10 | user_p@10 | user_p2@10 |", "|---|---|---|---|---|"]
            for label, values in user["configs"].items():
                model, _, ranking = label.rpartition(" | ")
                lines.append(f"| {Path(model).name or model} | {ranking} | {values['user_ndcg@10']:.4f} | "
                             f"{values['user_p@10']:.4f} | {values['user_p2@10']:.4f} |")
        lines.append("")
    lines += [
        "### Intended use",
        "Embedding short mood/scene descriptions and lyric lines for song search by meaning (the lyrics-meaning "
        "Space). Not for judging people, and not a tool for self-harm content.",
        "",
        "### Limitations",
        "Trained on a few thousand English annotations of popular songs: other languages, genres and slang are "
        "under-represented; annotation style (explanations) differs from what visitors type; scores are not "
        "calibrated probabilities.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, summary: dict, result: dict | None) -> Path:
    """Append our section to the card sentence-transformers wrote on save (or start one)."""
    path = Path(model_dir) / "README.md"
    existing = path.read_text() if path.is_file() else ""
    marker = "## Lyrics meaning search"
    if marker in existing:
        existing = existing[: existing.index(marker)]
    path.write_text(existing.rstrip() + "\n\n" + model_card_section(summary, result))
    return path
