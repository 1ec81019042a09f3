"""Embedding sets: every distinct line text of a catalog encoded once, plus a manifest that pins the model.

Layout of an embedding directory::

    manifest.json        model name/id/revision/fingerprint, dim, dtype, count, catalog hash, vectors hash
    embeddings.parquet   text (string) · embedding (fixed_size_list<float32>[dim]), unit length
    verses.parquet       the same schema for the distinct verse and whole-song texts (text models only; see
                         ``verse_texts`` and ``song_texts``)

A verse is a run of consecutive distinct lines of one song encoded as ONE text, so the model sees them together;
a song text is all of a song's distinct lines as one text (the model reads as much of it as its sequence length
allows: the song's opening verses and chorus). The manifest's ``verses`` entry (absent in sets without verses)
records the lines per verse, whether song texts are included, the count and the checksum of the vectors.

An embedding set is only valid for the exact model and catalog that made it; ``load_embeddings`` refuses
anything else, and a set is written to a temporary directory and renamed into place, so a half-written set
is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recommender.catalog import Catalog, replace_directory
from recommender.encoders import TextEncoder, fingerprints_match
from recommender.errors import EmbeddingsMismatchError
from space_config import SETTINGS

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "embeddings.parquet"
VERSES_FILE = "verses.parquet"
FORMAT_VERSION = 1
WHOLE_SONG = sys.maxsize  # "lines per verse" of a song text: one verse holding every distinct line


@dataclass
class EmbeddingSet:
    """Unit vectors for the distinct line texts of one catalog, made by one model.

    Attributes:
        verse_texts: The distinct verse texts (``verse_texts``) and song texts (``song_texts``), or None for a set
            without verses (CLIP, older sets).
        verse_vectors: Their (verses, d) unit vectors, or None.
    """

    texts: list[str]
    vectors: np.ndarray
    manifest: dict
    verse_texts: list[str] | None = None
    verse_vectors: np.ndarray | None = None

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


def vectors_digest(vectors: np.ndarray) -> str:
    """Hash of the exact float32 bytes: one changed vector changes it."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


def distinct_texts(catalog: Catalog) -> list[str]:
    """Each distinct line text once, in first-appearance order (a chorus is encoded once, not per repeat)."""
    return list(dict.fromkeys(catalog.lines["text"].tolist()))


def verse_texts(catalog: Catalog, lines: int = SETTINGS.verse_lines) -> list[tuple[str, str]]:
    """``(song_id, verse_text)`` for every verse of the catalog, songs in ``catalog.songs`` order.

    A song's distinct line texts (each at its first appearance, in position order: a repeated chorus counts once)
    are cut into consecutive runs of ``lines``; the last, shorter run is a verse of its own (a song shorter than
    ``lines`` is one verse). A verse's text is its lines joined with newlines. ``lines`` <= 0: no verses.
    """
    lines = int(lines)
    if lines <= 0 or catalog.lines.empty:
        return []
    ordered = catalog.lines.sort_values(["song_id", "position"], kind="stable")
    song_texts = {song_id: list(dict.fromkeys(texts))
                  for song_id, texts in ordered.groupby("song_id", sort=False)["text"].agg(list).items()}
    verses = []
    for song_id in catalog.songs["song_id"].tolist():
        texts = song_texts.get(song_id, [])
        verses.extend((song_id, "\n".join(texts[start:start + lines])) for start in range(0, len(texts), lines))
    return verses


def song_texts(catalog: Catalog) -> list[tuple[str, str]]:
    """``(song_id, song_text)`` for every song with lines: its distinct lines, in order, joined with newlines.

    Why: a line or an 8-line verse says little about what a whole song is about; encoded as one text, the song's
    opening (as far as the model's sequence length reaches) is the strongest single song-level signal measured.
    """
    return verse_texts(catalog, lines=WHOLE_SONG)


def build_embeddings(catalog: Catalog, encoder: TextEncoder, out_dir: str | os.PathLike, *,
                     batch_size: int | None = None, show_progress_bar: bool = True,
                     verse_lines: int | None = None) -> tuple[EmbeddingSet, dict]:
    """Encode the catalog's distinct line texts (and, for text models, its distinct verse and song texts) and write
    the set atomically.

    Args:
        verse_lines: Lines per verse (default ``SETTINGS.verse_lines``); 0 builds no verses and no song texts.
            CLIP models never get them: their 77-token context would truncate them.

    Returns:
        The embedding set and a build report (counts, seconds, lines per second, verses encoded).
    """
    texts = distinct_texts(catalog)
    started = time.perf_counter()
    kwargs = {"show_progress_bar": show_progress_bar}
    if encoder.kind == "text":
        kwargs["bulk"] = True
    if batch_size:
        kwargs["batch_size"] = batch_size
    vectors = encoder.encode(texts, **kwargs) if texts else np.zeros((0, encoder.dimension), np.float32)
    seconds = time.perf_counter() - started
    report = {
        "catalog_lines": len(catalog.lines),
        "distinct_texts_encoded": len(texts),
        "seconds": round(seconds, 3),
        "lines_per_second": round(len(catalog.lines) / seconds, 1) if seconds > 0 else None,
        **getattr(encoder, "last_encode_report", {}),
    }
    verse_lines = SETTINGS.verse_lines if verse_lines is None else int(verse_lines)
    verses = (list(dict.fromkeys(text for _, text in verse_texts(catalog, lines=verse_lines) + song_texts(catalog)))
              if encoder.kind == "text" and verse_lines > 0 else [])
    verse_vectors = None
    if verses:
        started = time.perf_counter()
        verse_vectors = encoder.encode(verses, **kwargs)
        report["verse_seconds"] = round(time.perf_counter() - started, 3)
    report["verses_encoded"] = len(verses)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_name": encoder.name,
        "model_id": encoder.model_id,
        "model_revision": encoder.revision,
        "model_kind": encoder.kind,
        "model_source": encoder.source,
        "fingerprint": encoder.fingerprint,
        "threshold": encoder.threshold,
        "dimension": int(vectors.shape[1]),
        "dtype": "float32",
        "count": len(texts),
        "catalog_hash": catalog.content_hash,
        "vectors_sha256": vectors_digest(vectors),
        "build_report": report,
    }
    if verses:
        manifest["verses"] = {"lines": verse_lines, "song_texts": True, "count": len(verses),
                              "vectors_sha256": vectors_digest(verse_vectors)}
    embedding_set = EmbeddingSet(texts, vectors, manifest, verses or None, verse_vectors)
    save_embeddings(embedding_set, out_dir)
    return embedding_set, report


def save_embeddings(embedding_set: EmbeddingSet, out_dir: str | os.PathLike) -> Path:
    """Write vectors and manifest into a temp dir next to ``out_dir``, then rename it into place."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dim = embedding_set.dimension
        pq.write_table(_vector_table(embedding_set.texts, embedding_set.vectors, dim), staging / VECTORS_FILE)
        if embedding_set.verse_texts is not None:
            pq.write_table(_vector_table(embedding_set.verse_texts, embedding_set.verse_vectors, dim),
                           staging / VERSES_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(embedding_set.manifest, indent=2))
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _vector_table(texts: list[str], vectors: np.ndarray, dim: int) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.table({
        "text": pa.array(texts, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })


def _read_vector_table(path: Path, dim: int) -> tuple[list[str], np.ndarray]:
    """Texts and (n, dim) float32 vectors of a vectors file.

    Raises:
        EmbeddingsMismatchError: The file is unreadable, corrupted or truncated.
    """
    try:
        table = pq.read_table(path)
        texts = table.column("text").to_pylist()
        embedding_column = table.column("embedding").combine_chunks()
        vectors = embedding_column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    except (OSError, KeyError, ValueError, pa.ArrowException) as error:
        raise EmbeddingsMismatchError(f"{path}: corrupted or truncated ({error})") from error
    return texts, vectors


def read_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of an embedding set.

    Raises:
        EmbeddingsMismatchError: Missing or unreadable manifest.
    """
    path = Path(directory) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EmbeddingsMismatchError(f"{path}: missing or unreadable embedding manifest ({error})") from error


def write_manifest(directory: str | os.PathLike, manifest: dict) -> Path:
    """Replace an embedding set's manifest atomically (write a temp file, then rename over the old one)."""
    path = Path(directory) / MANIFEST_FILE
    staging = path.with_name(f".{MANIFEST_FILE}.{os.getpid()}.tmp")
    staging.write_text(json.dumps(manifest, indent=2))
    os.replace(staging, path)
    return path


def load_embeddings(directory: str | os.PathLike, *, catalog: Catalog, encoder: TextEncoder) -> EmbeddingSet:
    """Load an embedding set and prove it belongs to ``catalog`` and ``encoder``.

    Raises:
        EmbeddingsMismatchError: The model fingerprint or the catalog hash differ, or the vectors file is
            corrupted or truncated; the message names both sides.
    """
    source = Path(directory)
    manifest = read_manifest(source)
    if manifest.get("catalog_hash") != catalog.content_hash:
        raise EmbeddingsMismatchError(
            f"{source}: embeddings were built for catalog {manifest.get('catalog_hash')}, "
            f"but the loaded catalog is {catalog.content_hash}; rebuild them with `python -m recommender build`")
    if not fingerprints_match(manifest.get("fingerprint", {}), encoder.fingerprint):
        raise EmbeddingsMismatchError(
            f"{source}: embeddings were made by {manifest.get('model_id')} "
            f"(fingerprint {manifest.get('fingerprint', {}).get('sha')}), but the loaded model is "
            f"{encoder.model_id} (fingerprint {encoder.fingerprint['sha']}); they cannot be mixed")
    try:
        dim = int(manifest["dimension"])
    except (KeyError, TypeError, ValueError) as error:
        raise EmbeddingsMismatchError(f"{source / VECTORS_FILE}: corrupted or truncated ({error})") from error
    texts, vectors = _read_checked_vectors(source / VECTORS_FILE, dim, count=manifest.get("count"),
                                           sha256=manifest.get("vectors_sha256"), noun="vectors")
    missing = set(catalog.lines["text"]).difference(texts)
    if missing:
        raise EmbeddingsMismatchError(f"{source}: {len(missing)} catalog line text(s) have no embedding")
    verses, verse_vectors = _load_verses(source, manifest, catalog, dim)
    return EmbeddingSet(texts, vectors, manifest, verses, verse_vectors)


def _read_checked_vectors(path: Path, dim: int, *, count: object, sha256: object,
                          noun: str) -> tuple[list[str], np.ndarray]:
    """A vector file's texts and vectors, proven to be the ``count`` vectors whose checksum the manifest holds.

    Raises:
        EmbeddingsMismatchError: Unreadable, another number of vectors, or a checksum mismatch.
    """
    texts, vectors = _read_vector_table(path, dim)
    if len(texts) != count or vectors.shape[0] != len(texts):
        raise EmbeddingsMismatchError(f"{path}: manifest says {count} {noun}, file holds {vectors.shape[0]}")
    if vectors_digest(vectors) != sha256:
        raise EmbeddingsMismatchError(f"{path}: {noun} do not match the manifest's checksum "
                                      "(modified or corrupted); rebuild or re-download the set")
    return texts, vectors


def _load_verses(source: Path, manifest: dict, catalog: Catalog,
                 dim: int) -> tuple[list[str] | None, np.ndarray | None]:
    """The verse (and song) texts and vectors a manifest lists, verified like the line vectors; (None, None) when it
    lists none.

    Raises:
        EmbeddingsMismatchError: The verses file is missing, corrupted, holds another count, fails its checksum, or
            lacks a verse (or, when the manifest says it holds them, a song text) of the catalog.
    """
    info = manifest.get("verses")
    if not info:
        return None, None
    path = source / VERSES_FILE
    if not path.is_file():
        raise EmbeddingsMismatchError(f"{path}: missing, but the manifest lists {info.get('count')} verse vectors; "
                                      "rebuild or re-download the set")
    texts, vectors = _read_checked_vectors(path, dim, count=info.get("count"), sha256=info.get("vectors_sha256"),
                                           noun="verse vectors")
    try:
        lines = int(info["lines"])
    except (KeyError, TypeError, ValueError) as error:
        raise EmbeddingsMismatchError(f"{source / MANIFEST_FILE}: verses entry has no valid line count") from error
    expected = verse_texts(catalog, lines=lines) + (song_texts(catalog) if info.get("song_texts") else [])
    missing = {text for _, text in expected}.difference(texts)
    if missing:
        raise EmbeddingsMismatchError(f"{path}: {len(missing)} catalog verse or song text(s) have no embedding")
    return texts, vectors
