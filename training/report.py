"""The model card a fine-tuned model carries, and the gate that lets only a winner be pushed."""

from __future__ import annotations

from pathlib import Path

GATE_METRICS = ("line_mrr@10", "song_recall@10")


def push_decision(result: dict, *, candidate: str, incumbent: str) -> tuple[bool, str]:
    """Whether ``candidate`` beats ``incumbent`` on held-out songs (``result`` from ``training.evaluate``).

    A winner improves line MRR@10 with a 95% CI entirely above 0 and does not lose song Recall@10 (its CI's
    upper end stays above 0). Anything else is refused with the numbers that decided it.
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
    return True, f"beats {incumbent}: {summary}"


def model_card_section(summary: dict, result: dict | None) -> str:
    """Markdown: base model, data, split sizes, metrics vs base with CIs, intended use, limitations."""
    lines = [
        "## Lyrics meaning search: fine-tuning and evaluation",
        "",
        f"- **Base model:** `{summary['base_model_id']}` (requested as `{summary['base']}`)",
        "- **Data:** (Genius community annotation → annotated lyric line) pairs from an ingested catalog; "
        "annotations that only restate the line, very short ones and section headers are filtered out "
        f"({summary['pair_filter']}).",
        f"- **Split (by artist, seeded hash; no song or artist in two splits):** pairs {summary['split_pairs']}, "
        f"songs {summary['split_songs']}; training rows (with same-song hard negatives): {summary['train_rows']}.",
        "- **Loss:** MultipleNegativesRankingLoss with the NO_DUPLICATES batch sampler; best checkpoint by dev MRR@10.",
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
