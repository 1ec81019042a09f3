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
