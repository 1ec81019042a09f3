"""The seed ranking of the original study, as pure functions over arrays.

Top-k lines by cosine → a line under the model's threshold counts ``low_score_weight`` (½) of its score →
sum per song = song score. The valence range is turned into a song mask *before* the top-k, so a narrow range
still gets its best songs instead of the leftovers of a global top-k.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from recommender.errors import QueryError
from space_config import SETTINGS


@dataclass(frozen=True)
class LineMatch:
    """One candidate line: its index row and raw cosine."""

    row: int
    score: float


@dataclass
class SongHit:
    """A ranked song: its catalog position, its score by the rule, and its candidate lines best first."""

    song_index: int
    score: float
    lines: list[LineMatch] = field(default_factory=list)


def check_valence_range(valence_min: float, valence_max: float) -> tuple[float, float]:
    """Validate a valence range.

    Raises:
        QueryError: Bounds outside 0..1, not numbers, or min > max.
    """
    try:
        low, high = float(valence_min), float(valence_max)
    except (TypeError, ValueError) as error:
        raise QueryError(f"valence range must be two numbers, got {valence_min!r}, {valence_max!r}") from error
    if not (0.0 <= low <= 1.0 and 0.0 <= high <= 1.0):
        raise QueryError(f"valence range must lie within 0..1, got {low}..{high}")
    if low > high:
        raise QueryError(f"valence minimum {low} is greater than maximum {high}")
    return low, high


def songs_in_valence_range(valence: np.ndarray, valence_min: float, valence_max: float) -> np.ndarray:
    """Boolean mask over songs. The full range keeps songs without a valence; any narrower range drops them."""
    low, high = check_valence_range(valence_min, valence_max)
    valence = np.asarray(valence, dtype=np.float64)
    if low <= 0.0 and high >= 1.0:
        return np.ones(len(valence), dtype=bool)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(valence) & (valence >= low) & (valence <= high)


def top_k_rows(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows of ``scores`` (−inf rows never count), best first, ties broken by lower row index.

    ``torch.topk`` finds the k-th value; rows equal to it are then taken in index order, so the result is
    deterministic even when many scores tie at the boundary.
    """
    finite = int(torch.isfinite(scores).sum())
    k = min(int(k), finite)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    kth_value = torch.topk(scores, k, sorted=False).values.min()
    above = torch.nonzero(scores > kth_value).flatten()
    tied = torch.nonzero(scores == kth_value).flatten()[: k - len(above)]
    rows = torch.cat([above, tied]).numpy()
    values = scores[rows].numpy()
    order = np.lexsort((rows, -values))
    return rows[order].astype(np.int64), values[order]


def rank_songs(candidate_rows: np.ndarray, candidate_scores: np.ndarray, row_song: np.ndarray, *,
               threshold: float, low_score_weight: float = SETTINGS.low_score_weight,
               top_n: int = SETTINGS.default_top_n) -> list[SongHit]:
    """Aggregate candidate lines into songs by the seed rule.

    Args:
        candidate_rows: Index rows of the top-k lines, best first.
        candidate_scores: Their raw cosines, same order.
        row_song: Song position of every index row.
        threshold: Cosine under which a line counts ``low_score_weight`` of its score.
        low_score_weight: The weight of a line under the threshold.
        top_n: How many songs to return.

    Returns:
        Songs by descending score (ties: lower song position first), each with its lines best first.
    """
    hits: dict[int, SongHit] = {}
    for row, score in zip(candidate_rows.tolist(), candidate_scores.tolist(), strict=True):
        song = int(row_song[row])
        hit = hits.setdefault(song, SongHit(song, 0.0))
        hit.score += score if score >= threshold else score * low_score_weight
        hit.lines.append(LineMatch(row, score))
    ranked = sorted(hits.values(), key=lambda hit: (-hit.score, hit.song_index))
    return ranked[: max(int(top_n), 0)]
