"""Per-model threshold calibration by percentile matching (pure functions over score arrays).

The ranking rule halves the score of a candidate line whose cosine is under the model's threshold. The seed rule
fixed that threshold at 0.6 for the baseline text model, but cosines of another model (CLIP's text tower, a
fine-tuned model) live on a different scale: CLIP text–text cosines are typically far higher, so 0.6 would halve
nothing. We therefore transfer the threshold by *rank*, not by value:

1. Run the same ``SAMPLE_QUERIES`` through the baseline model over the catalog and pool the scores of every query's
   top-100 candidate lines (``pooled_top_scores``). The share of those pooled scores that lie strictly below 0.6
   is the reference percentile *p* (``reference_percentile``): "the baseline halves a fraction *p* of its
   candidates".
2. Do the same with the target model and take the score at that same percentile of its pooled candidates
   (``calibrated_threshold``): the target model then halves the same fraction *p* of its candidates.

``calibrated_threshold`` uses the nearest rank: with the *n* pooled target scores sorted ascending
``s[0] ≤ … ≤ s[n-1]`` and ``k = round(p·n)``, the threshold is ``s[k]``, so exactly ``k`` target scores lie strictly
below it (ties aside) and ``reference_percentile(target, calibrated_threshold(target, p)) == k / n``. When
``k == n`` (the baseline halves every candidate) the threshold is the next float above the largest score, so every
target candidate is halved too; when ``p == 0`` it is the smallest score, so none is.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

REFERENCE_THRESHOLD = 0.6
TOP_K = 100

# Short, varied mood/scene queries (the kinds of things people type or photograph); fixed so calibrations compare.
SAMPLE_QUERIES: tuple[str, ...] = (
    "driving alone at night",
    "a rainy afternoon by the window",
    "dancing at a summer party",
    "heartbreak after a long relationship",
    "falling in love for the first time",
    "missing my hometown",
    "a road trip with friends",
    "waking up on a lazy sunday",
    "losing someone you love",
    "feeling invincible before a big game",
    "a quiet walk through the snow",
    "sunset on the beach",
    "a crowded city at rush hour",
    "working late in an empty office",
    "a wedding celebration",
    "growing old together",
    "leaving everything behind",
    "anger at a betrayal",
    "hope after a hard year",
    "childhood memories of summer",
    "a lonely bar at closing time",
    "a storm over the ocean",
    "the first day of spring",
    "partying until sunrise",
    "praying for a second chance",
    "a small town with nothing to do",
    "watching the stars from a rooftop",
    "a train leaving the station",
    "burning the old love letters",
    "coffee and rain in the morning",
)


def _pooled(scores: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"{what} are empty: calibration needs the pooled top-{TOP_K} scores of sample queries")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return values


def pooled_top_scores(query_vectors: np.ndarray, line_vectors: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """The cosines of each query's ``k`` best lines, pooled into one 1-D array (``len(queries) · min(k, lines)``).

    Both inputs are unit rows (``(queries, dim)`` and ``(lines, dim)``), so dot products are cosines.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    lines = np.asarray(line_vectors, dtype=np.float32)
    if queries.ndim != 2 or lines.ndim != 2 or queries.shape[1] != lines.shape[1]:
        raise ValueError(f"query and line vectors must be 2-D with the same width, got {queries.shape} and "
                         f"{lines.shape}")
    if len(queries) == 0 or len(lines) == 0 or k <= 0:
        raise ValueError("pooled_top_scores needs at least one query, one line and k ≥ 1")
    scores = queries @ lines.T
    k = min(int(k), scores.shape[1])
    top = np.partition(scores, scores.shape[1] - k, axis=1)[:, scores.shape[1] - k:]
    return top.ravel().astype(np.float64)


def reference_percentile(reference_scores: np.ndarray, reference_threshold: float = REFERENCE_THRESHOLD) -> float:
    """The share (0..1) of the baseline's pooled top-100 candidate scores that lie strictly below its threshold.

    Args:
        reference_scores: Pooled top-100 candidate cosines of the baseline model over ``SAMPLE_QUERIES``
            (any shape; flattened).
        reference_threshold: The baseline's threshold (0.6, the seed rule's value).

    Raises:
        ValueError: Empty input or non-finite scores.
    """
    values = _pooled(reference_scores, "reference scores")
    return float(np.count_nonzero(values < float(reference_threshold)) / values.size)


def calibrated_threshold(target_scores: np.ndarray, percentile: float) -> float:
    """The target model's score at ``percentile`` of its pooled top-100 candidate scores (nearest rank).

    With the ``n`` scores sorted ascending and ``k = round(percentile · n)``: the ``k``-th smallest (0-based), so
    that ``k`` scores lie below it; for ``k == n`` the next float above the maximum (all scores lie below it).

    Args:
        target_scores: Pooled top-100 candidate cosines of the target model over ``SAMPLE_QUERIES`` (flattened).
        percentile: From :func:`reference_percentile`, in 0..1.

    Raises:
        ValueError: Empty input, non-finite scores, or a percentile outside 0..1.
    """
    values = np.sort(_pooled(target_scores, "target scores"))
    percentile = float(percentile)
    if not 0.0 <= percentile <= 1.0:
        raise ValueError(f"percentile must lie within 0..1, got {percentile}")
    rank = math.floor(percentile * values.size + 0.5)
    if rank >= values.size:
        return float(np.nextafter(values[-1], np.inf))
    return float(values[rank])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def _owning_catalog(embeddings_dir: Path) -> Path:
    """Embedding sets built on first use live in ``<catalog>/embeddings/<model>``: find that catalog."""
    candidate = embeddings_dir.resolve().parent.parent
    if (candidate / "songs.parquet").is_file():
        return candidate
    from recommender.errors import RecommenderError

    raise RecommenderError(f"cannot tell which catalog {embeddings_dir} belongs to: pass --catalog")


def calibrate_embeddings(embeddings_dir: str | os.PathLike, *, catalog_dir: str | os.PathLike | None = None,
                         images_dir: str | os.PathLike | None = None) -> dict:
    """Calibrate an embedding set's threshold against the text baseline and store it in its manifest.

    Queries are ``SAMPLE_QUERIES`` for both models, except that pictures from ``images_dir`` (if given) are the
    target's queries — the honest choice for CLIP, whose image–text cosines are what image search ranks by.
    Candidate scores come from the same line index the search uses. The text baseline itself keeps 0.6.

    Returns:
        What was done: model name, threshold, percentile, number and kind of queries.
    """
    from recommender.embeddings import read_manifest, write_manifest
    from recommender.encoders import fingerprints_match
    from recommender.service import Recommender
    from space_config import SETTINGS

    embeddings_dir = Path(embeddings_dir)
    manifest = read_manifest(embeddings_dir)
    catalog_dir = Path(catalog_dir) if catalog_dir else _owning_catalog(embeddings_dir)
    target = Recommender.open(catalog_dir=catalog_dir, embeddings_dir=embeddings_dir, model=manifest["model_name"])
    reference = Recommender.open(catalog_dir=catalog_dir, model=SETTINGS.baseline_model)
    outcome = {"model_name": manifest["model_name"], "reference_model": reference.encoder.describe(),
               "reference_threshold": REFERENCE_THRESHOLD}
    if target.encoder.kind == "text" and fingerprints_match(target.encoder.fingerprint, reference.encoder.fingerprint):
        outcome.update(threshold=REFERENCE_THRESHOLD, percentile=float("nan"), queries=0, query_kind="(baseline)")
        return outcome

    def candidate_scores(recommender: Recommender, query_vectors: np.ndarray) -> np.ndarray:
        index = recommender.index
        rows = index.vectors.numpy()[index.row_text]
        return pooled_top_scores(query_vectors, rows, TOP_K)

    percentile = reference_percentile(candidate_scores(
        reference, reference.encoder.encode_queries(list(SAMPLE_QUERIES))), REFERENCE_THRESHOLD)
    if images_dir is not None:
        pictures = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not pictures:
            raise ValueError(f"no pictures ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
        query_vectors, query_kind = target.encoder.encode_images(pictures), "pictures"
    else:
        query_vectors, query_kind = target.encoder.encode_queries(list(SAMPLE_QUERIES)), "text queries"
    threshold = calibrated_threshold(candidate_scores(target, query_vectors), percentile)
    outcome.update(threshold=threshold, percentile=percentile, queries=len(query_vectors), query_kind=query_kind)
    manifest["threshold"] = threshold
    manifest["calibration"] = {"method": "percentile match with the text baseline's 0.6 (recommender.calibration)",
                               **outcome}
    write_manifest(embeddings_dir, manifest)
    return outcome
