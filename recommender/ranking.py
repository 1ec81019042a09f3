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


# --- Rankings beyond the seed rule ------------------------------------------------------------------------------
#
# The seed rule sums the top-100 line cosines per song, so a song wins by having many lines that each share a word
# or a phrase with the query, whatever the song is about. The variants below score songs from units that carry
# more context, all computed from the same line vectors (no extra encoding):
#
# * ``song-mean`` — the cosine of the query with the song's vector (the normalized mean of its distinct lines);
# * ``windows`` — the seed rule over windows of consecutive lines (normalized mean of ``window_lines`` line
#   vectors, every ``window_stride`` lines), so a match needs a few lines in a row about the query;
# * ``hybrid`` — the song vector plus its best window: what the song is about, and where it says it best;
# * ``blend`` — the weighted mean, by ``SETTINGS.blend_weights`` = (w1, w2, w3, w4), of cos(song vector),
#   cos(verse mean), cos(best window) and cos(song text). The verse mean is the normalized mean of the song's *verse*
#   vectors: runs of ``SETTINGS.verse_lines`` distinct lines that the model encoded as one text (stored with the
#   embedding set, see recommender/embeddings.py), so the model reads lines in context instead of one at a time;
#   the song text is all of the song's distinct lines encoded as one text (as far as the model reads). A set
#   without verses or song texts (CLIP sets, older sets) lacks those terms: the weighted mean is over the others
#   (no verses, no song texts: "hybrid" with weights w1 / (w1 + w3) and w3 / (w1 + w3)).

SEED_RANKING = "seed"
RANKING_NAMES = (SEED_RANKING, "song-mean", "windows", "hybrid", "blend")
RANKING_LABELS = {
    SEED_RANKING: "study's rule: top-100 lines, sum per song",
    "song-mean": "song vector: mean of the song's lines",
    "windows": f"study's rule over {SETTINGS.window_lines}-line windows",
    "hybrid": "song vector + best window",
    "blend": "song vector + verses + best window + whole song",
}


def check_ranking(name: str | None) -> str:
    """Validate a ranking name (None → the configured default).

    Raises:
        QueryError: Not one of ``RANKING_NAMES``.
    """
    ranking = SETTINGS.default_ranking if name is None else str(name).strip().lower()
    if ranking not in RANKING_NAMES:
        raise QueryError(f"unknown ranking {name!r}: choose one of {', '.join(RANKING_NAMES)}")
    return ranking


@dataclass(frozen=True)
class SongUnits:
    """Song-level retrieval units built from an index's row vectors.

    Attributes:
        song_vectors: (songs, d) unit vectors, the mean of each song's distinct line vectors (zero for a song with
            no rows).
        window_vectors: (windows, d) unit vectors, the mean of each window's line vectors.
        window_song: Song position of each window.
        window_first_row: First index row of each window (its rows are consecutive in the index).
        window_size: Rows per window (a song shorter than that is one window).
        song_row_start: Rows of song s are ``song_rows[song_row_start[s]:song_row_start[s + 1]]``.
        song_rows: Index rows grouped by song, in line order.
        verse_mean_vectors: (songs, d) unit vectors, the normalized mean of each song's verse vectors (zero for a song
            without verses), or None when the embedding set has no verses.
        song_text_vectors: (songs, d) unit vectors of each song's text (zero for a song without lines), or None when
            the embedding set has no song texts.
    """

    song_vectors: torch.Tensor
    window_vectors: torch.Tensor
    window_song: np.ndarray
    window_first_row: np.ndarray
    window_size: np.ndarray
    song_row_start: np.ndarray
    song_rows: np.ndarray
    verse_mean_vectors: torch.Tensor | None = None
    song_text_vectors: torch.Tensor | None = None


def build_song_units(row_song: np.ndarray, row_vectors: torch.Tensor, n_songs: int, *,
                     window_lines: int = SETTINGS.window_lines,
                     window_stride: int = SETTINGS.window_stride,
                     verse_song: np.ndarray | None = None,
                     verse_vectors: torch.Tensor | np.ndarray | None = None,
                     song_text_vectors: torch.Tensor | None = None) -> SongUnits:
    """Song vectors and line windows from row vectors (rows of one song consecutive, in line order), the verse
    mean of each song from ``verse_song`` (song position of each verse) and ``verse_vectors``, and the songs' text
    vectors (``song_text_vectors``, one row per song) when given."""
    row_song = np.asarray(row_song, dtype=np.int64)
    vectors = row_vectors.float()
    song_index = torch.from_numpy(row_song)
    song_sums = torch.zeros(n_songs, vectors.shape[1]).index_add_(0, song_index, vectors)
    song_vectors = torch.nn.functional.normalize(song_sums, dim=1)

    song_rows = np.argsort(row_song, kind="stable")
    song_row_start = np.searchsorted(row_song[song_rows], np.arange(n_songs + 1))
    firsts, sizes, songs = [], [], []
    for song in range(n_songs):
        start, end = int(song_row_start[song]), int(song_row_start[song + 1])
        count = end - start
        if count == 0:
            continue
        size = min(window_lines, count)
        offsets = list(range(0, count - size + 1, window_stride))
        if offsets[-1] != count - size:  # the song's last lines always get a window
            offsets.append(count - size)
        firsts.extend(song_rows[start + offset] for offset in offsets)
        sizes.extend([size] * len(offsets))
        songs.extend([song] * len(offsets))
    first_row = np.asarray(firsts, dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)
    # Window sums from prefix sums over the rows in song order (rows of a window are consecutive there).
    position_of_row = np.empty(len(row_song), dtype=np.int64)
    position_of_row[song_rows] = np.arange(len(row_song))
    ordered = vectors[torch.from_numpy(song_rows)]
    prefix = torch.cat([torch.zeros(1, vectors.shape[1]), torch.cumsum(ordered.double(), dim=0).float()])
    start_positions = torch.from_numpy(position_of_row[first_row])
    window_sums = prefix[start_positions + torch.from_numpy(size)] - prefix[start_positions]
    verse_means = None
    if verse_song is not None and verse_vectors is not None:
        verses = torch.as_tensor(np.ascontiguousarray(verse_vectors, dtype=np.float32)
                                 if isinstance(verse_vectors, np.ndarray) else verse_vectors).float()
        verse_index = torch.from_numpy(np.asarray(verse_song, dtype=np.int64))
        if len(verse_index) != len(verses):
            raise ValueError(f"{len(verse_index)} verse songs but {len(verses)} verse vectors")
        verse_sums = torch.zeros(n_songs, vectors.shape[1]).index_add_(0, verse_index, verses)
        verse_means = torch.nn.functional.normalize(verse_sums, dim=1)
    return SongUnits(song_vectors, torch.nn.functional.normalize(window_sums, dim=1),
                     np.asarray(songs, dtype=np.int64), first_row, size, song_row_start.astype(np.int64),
                     song_rows.astype(np.int64), verse_means,
                     None if song_text_vectors is None else song_text_vectors.float())


def _best_lines(units: SongUnits, song: int, query: torch.Tensor, row_vectors_of, count: int) -> list[LineMatch]:
    """The ``count`` best lines of one song for the query (shown under a song found by a song-level unit)."""
    rows = units.song_rows[units.song_row_start[song]:units.song_row_start[song + 1]]
    scores = (row_vectors_of(rows) @ query).numpy()
    order = np.lexsort((rows, -scores))[:count]
    return [LineMatch(int(rows[i]), float(scores[i])) for i in order]


def rank_songs_by_units(ranking: str, query_vector: np.ndarray, units: SongUnits, row_vectors_of, *,
                        allowed_songs: np.ndarray | None, threshold: float,
                        low_score_weight: float = SETTINGS.low_score_weight, top_n: int = SETTINGS.default_top_n,
                        shown_lines: int = SETTINGS.shown_lines_per_song,
                        blend_weights: tuple[float, ...] = SETTINGS.blend_weights) -> list[SongHit]:
    """Rank songs by ``song-mean``, ``windows``, ``hybrid`` or ``blend`` (see the section comment).

    Args:
        row_vectors_of: Maps an array of index rows to their (rows, d) float32 unit vectors.
        allowed_songs: Boolean mask over songs (the valence range), or None for all.
        blend_weights: ``blend``'s weights of the song vector, the verse mean, the best window and the song text
            (the score is their weighted mean over the terms the units have).

    Returns:
        Songs by descending score (ties: lower song position first), each with its best lines, best first.
    """
    query = torch.from_numpy(np.ascontiguousarray(query_vector, dtype=np.float32).reshape(-1))
    n_songs = len(units.song_vectors)
    allowed = np.ones(n_songs, dtype=bool) if allowed_songs is None else np.asarray(allowed_songs, dtype=bool)
    has_rows = np.diff(units.song_row_start) > 0
    if ranking in ("windows", "hybrid", "blend"):  # song-mean needs no window scores
        window_scores = units.window_vectors @ query
        window_scores[torch.from_numpy(~allowed[units.window_song])] = -torch.inf
    if ranking == "windows":
        windows, scores = top_k_rows(window_scores, SETTINGS.top_k_lines)
        hits = rank_songs(windows, scores, units.window_song, threshold=threshold,
                          low_score_weight=low_score_weight, top_n=top_n)
    else:
        song_scores = (units.song_vectors @ query).numpy().astype(np.float64)
        if ranking in ("hybrid", "blend"):
            best_window = np.full(n_songs, -np.inf)
            np.maximum.at(best_window, units.window_song, window_scores.numpy().astype(np.float64))
        if ranking == "hybrid":
            song_scores = (SETTINGS.hybrid_song_weight * song_scores
                           + (1.0 - SETTINGS.hybrid_song_weight) * best_window)
        elif ranking == "blend":
            song_weight, verse_weight, window_weight, text_weight = (float(weight) for weight in blend_weights)
            terms = [(song_weight, song_scores), (window_weight, best_window)]
            for weight, vectors in ((verse_weight, units.verse_mean_vectors), (text_weight, units.song_text_vectors)):
                if vectors is not None:  # a term the set lacks drops out of the weighted mean
                    terms.append((weight, (vectors @ query).numpy().astype(np.float64)))
            total = sum(weight for weight, _ in terms)
            song_scores = sum(weight / total * term for weight, term in terms)
        elif ranking != "song-mean":
            raise QueryError(f"unknown ranking {ranking!r}: choose one of {', '.join(RANKING_NAMES)}")
        song_scores[~(allowed & has_rows)] = -np.inf
        songs, scores = top_k_rows(torch.from_numpy(song_scores), top_n)
        hits = [SongHit(int(song), float(score)) for song, score in zip(songs, scores, strict=True)]
    for hit in hits:
        hit.lines = _best_lines(units, hit.song_index, query, row_vectors_of, shown_lines)
    return hits
