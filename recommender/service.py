"""Recommender: the one facade the CLI, the app and training use to search a catalog.

It owns a catalog, the encoder that embeds queries, the embedding set made by that same encoder (checked by
fingerprint) and the line index; it validates queries and returns results in the JSON shape of the CLI contract.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from huggingface_hub.errors import LocalEntryNotFoundError

from recommender.catalog import Catalog
from recommender.embeddings import EmbeddingSet, build_embeddings, load_embeddings, song_texts, verse_texts
from recommender.encoders import TextEncoder, load_encoder
from recommender.errors import EmbeddingsMismatchError, ModelUnavailableError, QueryError, RecommenderError
from recommender.index import LineIndex
from recommender.ranking import (
    SEED_RANKING,
    SongHit,
    SongUnits,
    build_song_units,
    check_ranking,
    rank_songs,
    rank_songs_by_units,
    songs_in_valence_range,
)
from space_config import SETTINGS

logger = logging.getLogger(__name__)


def model_slug(name: str) -> str:
    """A directory-safe, collision-free name for a model's embedding set."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name or name).strip("-")[:40] or "model"
    return f"{readable}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def default_catalog_dir() -> Path:
    """The embedded default catalog, ingested from ``data/`` into the cache on first use (keyed by content)."""
    from recommender.ingest import ingest_sources

    source = SETTINGS.default_catalog_source
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = SETTINGS.cache_dir / f"default-catalog-{digest}"
    if not (target / "songs.parquet").is_file():
        logger.info("ingesting the embedded default catalog into %s", target)
        ingest_sources([source]).save(target)
    return target


def check_query(query: str) -> str:
    """Normalize a text query.

    Raises:
        QueryError: Not text, empty after trimming, or longer than the configured limit.
    """
    if not isinstance(query, str):
        raise QueryError("the query must be text")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryError("the query is not valid text: it holds an unpaired surrogate character") from None
    cleaned = " ".join(query.replace("\x00", " ").split())
    if not cleaned:
        raise QueryError("the query is empty: type a sentence describing a mood or a scene")
    if len(cleaned) > SETTINGS.max_query_chars:
        raise QueryError(f"the query is too long ({len(cleaned)} characters; the limit is "
                         f"{SETTINGS.max_query_chars})")
    return cleaned


def check_top_n(top_n: int | float) -> int:
    """Validate the number of songs asked for.

    Raises:
        QueryError: Not a whole number between 1 and the configured maximum.
    """
    try:
        value = float(top_n)
    except (TypeError, ValueError) as error:
        raise QueryError(f"top_n must be a number, got {top_n!r}") from error
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= SETTINGS.max_top_n:
        raise QueryError(f"top_n must be a whole number from 1 to {SETTINGS.max_top_n}, got {top_n!r}")
    return int(value)


def missing_verses_reason(embeddings: EmbeddingSet, encoder: TextEncoder) -> str | None:
    """Why a text model's embedding set lacks the verses ``SETTINGS.verse_lines`` asks for, or None when it has them
    (or none are wanted: verses disabled, or a CLIP model)."""
    if SETTINGS.verse_lines <= 0 or encoder.kind != "text":
        return None
    verses = embeddings.manifest.get("verses")
    if not verses or embeddings.verse_texts is None:
        return "have no verse vectors"
    if verses.get("lines") != SETTINGS.verse_lines:
        return f"have {verses.get('lines')}-line verses, not {SETTINGS.verse_lines}-line ones"
    if not verses.get("song_texts"):
        return "have no song-text vectors"
    return None


def _verse_file_vectors(catalog: Catalog, embeddings: EmbeddingSet,
                        units: list[tuple[str, str]]) -> tuple[np.ndarray, torch.Tensor]:
    """Song position and vector (from the set's verses file) of each ``(song_id, text)`` unit; load_embeddings
    checked every one has a vector."""
    song_position = {song_id: position for position, song_id in enumerate(catalog.songs["song_id"].tolist())}
    text_position = {text: position for position, text in enumerate(embeddings.verse_texts)}
    songs = np.fromiter((song_position[song_id] for song_id, _ in units), dtype=np.int64, count=len(units))
    rows = np.fromiter((text_position[text] for _, text in units), dtype=np.int64, count=len(units))
    vectors = torch.from_numpy(np.ascontiguousarray(embeddings.verse_vectors, dtype=np.float32))[torch.from_numpy(rows)]
    return songs, vectors


def _verses_info(embeddings: EmbeddingSet) -> dict | None:
    """The manifest's verses entry when the set's verses are usable (verses enabled, file loaded), else None."""
    info = embeddings.manifest.get("verses")
    if SETTINGS.verse_lines <= 0 or not info or embeddings.verse_texts is None or embeddings.verse_vectors is None:
        return None
    return info


def song_verses(catalog: Catalog, embeddings: EmbeddingSet) -> tuple[np.ndarray | None, torch.Tensor | None]:
    """Song position and vector of every verse of ``catalog`` (by the set's verse length), or (None, None) when the
    set has no verses or ``SETTINGS.verse_lines`` is 0 (verses disabled)."""
    info = _verses_info(embeddings)
    if info is None:
        return None, None
    return _verse_file_vectors(catalog, embeddings, verse_texts(catalog, lines=int(info["lines"])))


def song_text_vectors(catalog: Catalog, embeddings: EmbeddingSet) -> torch.Tensor | None:
    """(songs, d) vector of each song's text (``recommender.embeddings.song_texts``; zero for a song without lines),
    or None when the set holds no song texts or verses are disabled."""
    info = _verses_info(embeddings)
    if info is None or not info.get("song_texts"):
        return None
    songs, vectors = _verse_file_vectors(catalog, embeddings, song_texts(catalog))
    by_song = torch.zeros(len(catalog.songs), vectors.shape[1])
    by_song[torch.from_numpy(songs)] = vectors
    return by_song


@dataclass
class Recommender:
    """Search one catalog with one model.

    Attributes:
        catalog: The songs and lines searched.
        encoder: Embeds queries; the same model made ``index``'s vectors.
        index: Line vectors of the catalog.
        catalog_label: Where the catalog came from (for status lines).
        embeddings_label: Where the embedding set came from.
        verse_song: Song position (in ``catalog.songs``) of each verse of the embedding set, or None without verses.
        verse_vectors: (verses, d) unit vectors of those verses (same order), or None.
        song_text_vectors: (songs, d) vectors of the songs' texts (``song_text_vectors``), or None without them.
    """

    catalog: Catalog
    encoder: TextEncoder
    index: LineIndex
    catalog_label: str
    embeddings_label: str
    threshold: float = SETTINGS.default_threshold
    notices: list[str] = field(default_factory=list)
    verse_song: np.ndarray | None = None
    verse_vectors: torch.Tensor | None = None
    song_text_vectors: torch.Tensor | None = None
    _units: SongUnits | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, *, catalog_dir: str | os.PathLike | None = None, embeddings_dir: str | os.PathLike | None = None,
             model: str = SETTINGS.baseline_model, build_missing: bool = True) -> Recommender:
        """Load a catalog, a model and its embedding set (built and cached on first use when allowed).

        Raises:
            CatalogError: The catalog is missing or malformed.
            ModelUnavailableError: The model cannot be resolved here.
            EmbeddingsMismatchError: The embedding set belongs to another model or catalog, or is corrupted.
        """
        catalog_path = Path(catalog_dir) if catalog_dir else default_catalog_dir()
        catalog = Catalog.load(catalog_path)
        encoder = load_encoder(model)
        explicit = embeddings_dir is not None
        embeddings_path = Path(embeddings_dir) if explicit else catalog_path / "embeddings" / model_slug(model)
        if not (embeddings_path / "manifest.json").is_file() and not explicit and build_missing:
            logger.info("building embeddings for %s into %s", encoder.describe(), embeddings_path)
            build_embeddings(catalog, encoder, embeddings_path, show_progress_bar=False)
        try:
            embeddings = load_embeddings(embeddings_path, catalog=catalog, encoder=encoder)
        except EmbeddingsMismatchError:
            if explicit or not build_missing:
                raise
            # Our own cache is stale (catalog re-ingested or model updated): rebuild it.
            logger.warning("cached embeddings at %s are stale; rebuilding", embeddings_path)
            build_embeddings(catalog, encoder, embeddings_path, show_progress_bar=False)
            embeddings = load_embeddings(embeddings_path, catalog=catalog, encoder=encoder)
        reason = None if explicit or not build_missing else missing_verses_reason(embeddings, encoder)
        if reason:
            # Our own cache predates verses or used another verse length: rebuild it (like a stale cache).
            logger.warning("cached embeddings at %s %s; rebuilding", embeddings_path, reason)
            build_embeddings(catalog, encoder, embeddings_path, show_progress_bar=False)
            embeddings = load_embeddings(embeddings_path, catalog=catalog, encoder=encoder)
        threshold = float(embeddings.manifest.get("threshold", encoder.threshold))
        catalog_label = "embedded default (data/default_songs.jsonl)" if catalog_dir is None else str(catalog_path)
        notices = [encoder.notice] if encoder.notice else []
        verse_song, verse_vectors = song_verses(catalog, embeddings)
        return cls(catalog, encoder, LineIndex.build(catalog, embeddings), catalog_label, str(embeddings_path),
                   threshold, notices, verse_song, verse_vectors, song_text_vectors(catalog, embeddings))

    def search_text(self, query: str, *, valence_min: float = 0.0, valence_max: float = 1.0,
                    top_n: int = SETTINGS.default_top_n, ranking: str | None = None) -> dict:
        """Songs whose lyric lines mean what ``query`` says, in the CLI's JSON shape.

        Args:
            ranking: A name from ``recommender.ranking.RANKING_NAMES``; None = ``SETTINGS.default_ranking``.

        Raises:
            QueryError: Empty or too long query, bad valence range, top_n or ranking.
        """
        cleaned = check_query(query)
        top_n = check_top_n(top_n)
        ranking = check_ranking(ranking)
        allowed = songs_in_valence_range(self.catalog.songs["valence"].to_numpy(), valence_min, valence_max)
        query_vector = self.encoder.encode_queries([cleaned])[0]
        return self.search_vector(query_vector, query=cleaned, allowed_songs=allowed, top_n=top_n, ranking=ranking)

    def search_image(self, image: object, *, valence_min: float = 0.0, valence_max: float = 1.0,
                     top_n: int = SETTINGS.default_top_n, ranking: str | None = None) -> dict:
        """Songs whose lyric lines match a picture (CLIP image tower vs the lines' CLIP text embeddings).

        Args:
            image: A path, raw bytes or a PIL image; decoded robustly by ``recommender.images.load_image``.

        Raises:
            QueryError: The loaded model is not a CLIP model, the image is unusable, or the options are bad.
        """
        if self.encoder.kind != "clip":
            raise QueryError(f"model {self.encoder.name!r} is a text model: image search needs a CLIP model "
                             "(for example --model clip)")
        top_n = check_top_n(top_n)
        ranking = check_ranking(ranking)
        allowed = songs_in_valence_range(self.catalog.songs["valence"].to_numpy(), valence_min, valence_max)
        query_vector = self.encoder.encode_images([image])[0]
        label = f"image:{Path(image).name}" if isinstance(image, (str, os.PathLike)) else "image"
        return self.search_vector(query_vector, query=label, allowed_songs=allowed, top_n=top_n, ranking=ranking)

    def search_vector(self, query_vector: np.ndarray, *, query: str, allowed_songs: np.ndarray,
                      top_n: int, ranking: str = SEED_RANKING) -> dict:
        """Rank songs for an already-embedded query (text or image) with the named ranking."""
        hits = self.rank(query_vector, allowed_songs=allowed_songs, top_n=top_n, ranking=ranking)
        return {"query": query, "model": self.encoder.name, "ranking": ranking,
                "results": [self._song_json(rank, hit) for rank, hit in enumerate(hits, 1)]}

    def rank(self, query_vector: np.ndarray, *, allowed_songs: np.ndarray | None, top_n: int,
             ranking: str = SEED_RANKING) -> list[SongHit]:
        """Ranked songs (positions in ``catalog.songs``) for a query vector: the seed rule or a song-level one."""
        if ranking == SEED_RANKING:
            rows, scores = self.index.search(query_vector, allowed_songs=allowed_songs, k=SETTINGS.top_k_lines)
            return rank_songs(rows, scores, self.index.row_song, threshold=self.threshold,
                              low_score_weight=SETTINGS.low_score_weight, top_n=top_n)
        return rank_songs_by_units(ranking, query_vector, self.song_units(), self._row_vectors,
                                   allowed_songs=allowed_songs, threshold=self.threshold, top_n=top_n)

    def _row_vectors(self, rows: np.ndarray) -> torch.Tensor:
        return self.index.vectors[torch.from_numpy(np.asarray(self.index.row_text[rows], dtype=np.int64))]

    def song_units(self) -> SongUnits:
        """Song vectors, line windows, verse means and song texts, built from the index's vectors (and the set's verse
        and song-text vectors) on first use (under a second for 100k lines; the seed ranking never needs them)."""
        if self._units is None:
            all_rows = np.arange(len(self.index), dtype=np.int64)
            self._units = build_song_units(self.index.row_song, self._row_vectors(all_rows), len(self.catalog.songs),
                                           verse_song=self.verse_song, verse_vectors=self.verse_vectors,
                                           song_text_vectors=self.song_text_vectors)
        return self._units

    def _song_json(self, rank: int, hit: SongHit) -> dict:
        song = self.catalog.songs.iloc[hit.song_index]
        valence = song["valence"]
        return {
            "rank": rank,
            "song_id": song["song_id"],
            "title": song["title"],
            "artist": song["artist"],
            "valence": None if valence is None or math.isnan(valence) else round(float(valence), 4),
            "score": round(hit.score, 6),
            "lines": [{"text": self.index.texts[int(self.index.row_text[line.row])], "score": round(line.score, 6)}
                      for line in hit.lines],
        }

    def status(self) -> str:
        """One line saying what is loaded and from where."""
        parts = [f"catalog {self.catalog_label} ({len(self.catalog.songs)} songs, {len(self.index)} lines)",
                 f"model {self.encoder.describe()}", f"embeddings {self.embeddings_label}", *self.notices]
        return " · ".join(parts)


def open_serving(model: str = SETTINGS.baseline_model) -> Recommender:
    """What the Space serves for ``model``: the pinned Hub dataset, else the embedded default.

    Order: pinned revision online → the same revision in the HF cache → the embedded default catalog (embeddings
    built locally). Each fallback is logged once and carried in ``Recommender.notices`` for the status line.
    An embedding set that fails its integrity checks is never served.

    Raises:
        ModelUnavailableError: The model itself cannot be loaded (nothing to fall back to).
    """
    from recommender.hub import PULL_PATTERNS, embedding_set_name, resolve_snapshot

    repo, revision = SETTINGS.dataset_repo, SETTINGS.dataset_revision
    if repo and revision:
        try:
            resolved = resolve_snapshot(repo, revision=revision, repo_type="dataset",
                                        allow_patterns=PULL_PATTERNS, timeout_s=SETTINGS.hub_timeout_s)
            embeddings_dir = resolved.path / "embeddings" / embedding_set_name(model)
            if not (embeddings_dir / "manifest.json").is_file():
                raise EmbeddingsMismatchError(f"dataset {repo}@{revision} has no embedding set for model {model!r}")
            recommender = Recommender.open(catalog_dir=resolved.path / "catalog", embeddings_dir=embeddings_dir,
                                           model=model)
            recommender.catalog_label = f"{repo}@{revision[:12]} (from {resolved.source})"
            recommender.embeddings_label = f"{repo}@{revision[:12]}:embeddings/{embedding_set_name(model)}"
            recommender.notices += [resolved.notice] if resolved.notice else []
            return recommender
        except ModelUnavailableError:
            raise
        except (RecommenderError, LocalEntryNotFoundError, OSError, ValueError) as error:
            notice = f"FALLBACK: dataset {repo}@{revision} is unavailable ({error}); serving the embedded default"
    else:
        notice = "no Hub dataset revision is pinned in space_config; serving the embedded default catalog"
    logger.warning(notice)
    recommender = Recommender.open(model=model)
    recommender.notices.append(notice)
    return recommender
