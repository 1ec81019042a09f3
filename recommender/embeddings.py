"""Embedding sets: every distinct line text of a catalog encoded once, plus a manifest that pins the model.

Layout of an embedding directory::

    manifest.json        model name/id/revision/fingerprint, dim, dtype, count, catalog hash, vectors hash
    embeddings.parquet   text (string) · embedding (fixed_size_list<float32>[dim]), unit length

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

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "embeddings.parquet"
FORMAT_VERSION = 1


@dataclass
class EmbeddingSet:
    """Unit vectors for the distinct line texts of one catalog, made by one model."""

    texts: list[str]
    vectors: np.ndarray
    manifest: dict

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


def vectors_digest(vectors: np.ndarray) -> str:
    """Hash of the exact float32 bytes: one changed vector changes it."""
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes()).hexdigest()


def distinct_texts(catalog: Catalog) -> list[str]:
    """Each distinct line text once, in first-appearance order (a chorus is encoded once, not per repeat)."""
    return list(dict.fromkeys(catalog.lines["text"].tolist()))


def build_embeddings(catalog: Catalog, encoder: TextEncoder, out_dir: str | os.PathLike, *,
                     batch_size: int | None = None, show_progress_bar: bool = True) -> tuple[EmbeddingSet, dict]:
    """Encode the catalog's distinct line texts and write the set atomically.

    Returns:
        The embedding set and a build report (counts, seconds, lines per second).
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
    embedding_set = EmbeddingSet(texts, vectors, manifest)
    save_embeddings(embedding_set, out_dir)
    return embedding_set, report


def save_embeddings(embedding_set: EmbeddingSet, out_dir: str | os.PathLike) -> Path:
    """Write vectors and manifest into a temp dir next to ``out_dir``, then rename it into place."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dim = embedding_set.dimension
        flat = pa.array(np.ascontiguousarray(embedding_set.vectors, dtype=np.float32).reshape(-1))
        table = pa.table({
            "text": pa.array(embedding_set.texts, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        })
        pq.write_table(table, staging / VECTORS_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps(embedding_set.manifest, indent=2))
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


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
        table = pq.read_table(source / VECTORS_FILE)
        texts = table.column("text").to_pylist()
        embedding_column = table.column("embedding").combine_chunks()
        dim = int(manifest["dimension"])
        vectors = embedding_column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    except (OSError, KeyError, ValueError, pa.ArrowException) as error:
        raise EmbeddingsMismatchError(f"{source / VECTORS_FILE}: corrupted or truncated ({error})") from error
    if len(texts) != manifest.get("count") or vectors.shape[0] != len(texts):
        raise EmbeddingsMismatchError(f"{source}: manifest says {manifest.get('count')} vectors, "
                                      f"file holds {vectors.shape[0]}")
    if vectors_digest(vectors) != manifest.get("vectors_sha256"):
        raise EmbeddingsMismatchError(f"{source / VECTORS_FILE}: vectors do not match the manifest's checksum "
                                      "(modified or corrupted); rebuild or re-download the set")
    missing = set(catalog.lines["text"]).difference(texts)
    if missing:
        raise EmbeddingsMismatchError(f"{source}: {len(missing)} catalog line text(s) have no embedding")
    return EmbeddingSet(texts, vectors, manifest)
