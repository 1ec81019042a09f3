"""LineIndex: top-k over the normalized line vectors of a catalog, with the valence mask applied inside.

Index rows are the distinct (song, line text) pairs of the catalog — a chorus repeated in a song is one row,
so it cannot fill the 100 candidate slots alone. Vectors are stored once per distinct text; a query scores the
distinct texts and gathers the row scores from them.

Three backends, picked by the number of distinct line vectors (``choose_backend``, thresholds in
``space_config``) or named explicitly. Every one returns the exact float32 cosines of its rows, best first,
ties broken by lower row index:

* ``exact`` — one float32 matrix-vector product over every vector: the reference. 4·d bytes per vector in RAM.
* ``int8`` — a faiss 8-bit scalar quantizer (one byte per dimension, one value range for all dimensions: the
  global min and max of the vectors) scanned in full with the float query; the best ``rescore_factor × k`` texts
  are then rescored in float32. d bytes per vector in RAM. (A per-dimension range, as in sentence-transformers'
  ``quantize_embeddings(..., precision="int8")``, scans half as fast in faiss and finds the same candidates.)
* ``ivf`` — faiss IVF over the same int8 codes (spherical k-means, √n lists), probing ``nprobe`` lists, then the
  same float32 rescoring. Approximate; for catalogs beyond what a full scan serves well.

The int8 and ivf backends keep their float32 vectors in a memory-mapped file (unless
``index_float_vectors_in_memory``), of which a query reads only its candidates' rows. The valence range is applied
inside every backend: the exact scan masks disallowed rows; int8 and ivf skip texts that no allowed row uses
(a faiss bitmap selector), and ivf divides its probe budget by the allowed share, so a narrow range probes every
list — an exhaustive int8 scan of the allowed subset.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recommender.catalog import Catalog
from recommender.embeddings import EmbeddingSet
from space_config import SETTINGS

logger = logging.getLogger(__name__)

BACKENDS = ("exact", "int8", "ivf")
_CHUNK_ROWS = 65_536
_KMEANS_ITERATIONS = 10
_KMEANS_SEED = 1234


def faiss_available() -> bool:
    """Whether faiss (the ``faiss-cpu`` package) can be imported here."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("the int8 and ivf index backends need faiss: pip install faiss-cpu") from error
    return faiss


@contextmanager
def _single_threaded_faiss(faiss):
    """Run one query's faiss search on this thread alone.

    faiss parallelizes over queries: for a single query the other OpenMP threads only join and leave the parallel
    region, which on a busy 2-core machine costs tens of milliseconds waiting for a core. The OpenMP thread count
    is per calling thread, so this does not touch builds running on other threads.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def choose_backend(n_vectors: int, requested: str | None = None) -> str:
    """The backend for an index of ``n_vectors`` distinct line vectors.

    ``requested`` (default ``SETTINGS.index_backend``) is ``auto`` or a backend name. ``auto`` takes ``exact`` below
    ``SETTINGS.index_int8_min_vectors``, ``int8`` below ``SETTINGS.index_ivf_min_vectors`` and ``ivf`` beyond; it
    stays ``exact`` (with a warning) where faiss is missing.

    Raises:
        ValueError: Unknown backend name.
        ImportError: A faiss backend was named explicitly and faiss is not installed.
    """
    name = (requested or SETTINGS.index_backend or "auto").strip().lower()
    if name not in ("auto", *BACKENDS):
        raise ValueError(f"unknown index backend {requested!r}: use auto, {', '.join(BACKENDS)}")
    if name != "auto":
        if name != "exact":
            _faiss()
        return name
    if n_vectors >= SETTINGS.index_ivf_min_vectors:
        name = "ivf"
    elif n_vectors >= SETTINGS.index_int8_min_vectors:
        name = "int8"
    else:
        return "exact"
    if not faiss_available():
        logger.warning("%d line vectors would use the %s index backend, but faiss is not installed; scanning "
                       "them exactly in float32 instead (pip install faiss-cpu)", n_vectors, name)
        return "exact"
    return name


def top_k_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``recommender.ranking.top_k_rows`` over a numpy array: the k best finite rows, best first, ties by lower row.

    The same rule in numpy: torch's small parallel ops (isfinite, nonzero) right after a multi-threaded matrix-vector
    product can stall for tens of milliseconds on a busy 2-core machine while the second OpenMP thread waits for a
    core; numpy's are single-threaded and take well under a millisecond here.
    """
    scores = np.asarray(scores, dtype=np.float32)
    k = min(int(k), int(np.count_nonzero(np.isfinite(scores))))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    kth_value = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = np.flatnonzero(scores > kth_value)
    tied = np.flatnonzero(scores == kth_value)[: k - len(above)]
    rows = np.concatenate([above, tied])
    values = scores[rows]
    order = np.lexsort((rows, -values))
    return rows[order].astype(np.int64), values[order]


@dataclass(frozen=True)
class _TextMask:
    """Texts used by at least one allowed row, as a faiss bitmap (bit i of byte i>>3, little-endian)."""

    bitmap: np.ndarray
    count: int
    fraction: float


def _compact_ids(values: np.ndarray) -> np.ndarray:
    """Positions as int32 when they fit (half the bytes of int64 per row), else int64."""
    array = np.asarray(values)
    if array.size and (array.min() < np.iinfo(np.int32).min or array.max() > np.iinfo(np.int32).max):
        return np.ascontiguousarray(array, dtype=np.int64)
    return np.ascontiguousarray(array, dtype=np.int32)


def _train_minmax(index, vectors: np.ndarray) -> None:
    """Train a faiss 8-bit scalar quantizer on the exact min and max of all vectors.

    faiss's min/max range statistic over the two rows ``[per-dimension min, per-dimension max]`` gives exactly the
    range of the data, without a sample that another vector could fall outside of.
    """
    low = np.full(vectors.shape[1], np.inf, dtype=np.float32)
    high = np.full(vectors.shape[1], -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        chunk = np.asarray(vectors[start:start + _CHUNK_ROWS], dtype=np.float32)
        np.minimum(low, chunk.min(axis=0), out=low)
        np.maximum(high, chunk.max(axis=0), out=high)
    index.train(np.ascontiguousarray(np.stack([low, high])))


class _Int8Scan:
    """Every vector as 8-bit codes, scanned in full with the float query (faiss ``IndexScalarQuantizer``)."""

    def __init__(self, vectors: np.ndarray) -> None:
        faiss = _faiss()
        self.size, dimension = vectors.shape
        self.index = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_8bit_uniform,
                                                faiss.METRIC_INNER_PRODUCT)
        _train_minmax(self.index, vectors)
        # One add: faiss sizes its code buffer exactly (chunked adds would grow it geometrically).
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def nbytes(self) -> int:
        return self.size * self.index.sa_code_size() + 2 * 4

    def candidates(self, query: np.ndarray, count: int, mask: _TextMask | None, nprobe: int) -> np.ndarray:
        faiss = _faiss()
        with _single_threaded_faiss(faiss):
            if mask is None:
                return self.index.search(query, count)[1][0]
            bitmap = mask.bitmap  # kept referenced while faiss reads it
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
            return self.index.search(query, count, params=faiss.SearchParameters(sel=selector))[1][0]

    def describe(self) -> str:
        return "int8 scan (faiss SQ8, one range) + float32 rescoring"


class _IvfScan:
    """faiss ``IndexIVFScalarQuantizer``: spherical k-means lists of 8-bit codes, ``nprobe`` lists per query."""

    def __init__(self, vectors: np.ndarray, *, nlist: int = 0, train_points: int = 64) -> None:
        faiss = _faiss()
        self.size, dimension = vectors.shape
        self.nlist = max(1, min(self.size, nlist or round(math.sqrt(self.size))))
        rng = np.random.default_rng(_KMEANS_SEED)
        sample_size = min(self.size, self.nlist * max(int(train_points), 1))
        sample = np.ascontiguousarray(vectors[np.sort(rng.choice(self.size, sample_size, replace=False))],
                                      dtype=np.float32)
        kmeans = faiss.Kmeans(dimension, self.nlist, niter=_KMEANS_ITERATIONS, spherical=True, seed=_KMEANS_SEED,
                              max_points_per_centroid=max(int(train_points), 1), min_points_per_centroid=1,
                              verbose=False)
        kmeans.train(sample)
        self.quantizer = faiss.IndexFlatIP(dimension)
        self.quantizer.add(np.ascontiguousarray(kmeans.centroids, dtype=np.float32))
        self.index = faiss.IndexIVFScalarQuantizer(self.quantizer, dimension, self.nlist,
                                                   faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT,
                                                   False)
        _train_minmax(self.index, vectors)  # the quantizer is complete, so this trains only the 8-bit codes
        self._fill(vectors)

    def _fill(self, vectors: np.ndarray) -> None:
        """Assign every vector to its closest centroid and write each list once, at its exact size."""
        faiss = _faiss()
        assignment = np.empty(self.size, dtype=np.int64)
        for start in range(0, self.size, _CHUNK_ROWS):
            chunk = np.ascontiguousarray(vectors[start:start + _CHUNK_ROWS], dtype=np.float32)
            assignment[start:start + len(chunk)] = self.quantizer.search(chunk, 1)[1][:, 0]
        order = np.argsort(assignment, kind="stable")
        bounds = np.searchsorted(assignment[order], np.arange(self.nlist + 1))
        for list_no in range(self.nlist):
            ids = np.ascontiguousarray(order[bounds[list_no]:bounds[list_no + 1]], dtype=np.int64)
            if not len(ids):
                continue
            codes = np.ascontiguousarray(self.index.sq.compute_codes(
                np.ascontiguousarray(vectors[ids], dtype=np.float32)), dtype=np.uint8)
            self.index.invlists.add_entries(list_no, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        self.index.ntotal = self.size

    def nbytes(self) -> int:
        # Codes and int64 ids in the lists (each list written once, at its exact size), centroids, code ranges.
        return (self.size * (self.index.code_size + 8) + self.nlist * self.index.d * 4
                + 2 * 4 + self.nlist * 48)

    def probes(self, nprobe: int, mask: _TextMask | None) -> int:
        """Lists to probe: ``nprobe`` divided by the allowed share, so a narrow valence range probes them all."""
        nprobe = max(1, int(nprobe))
        if mask is None:
            return min(nprobe, self.nlist)
        return min(self.nlist, math.ceil(nprobe / max(mask.fraction, 1e-12)))

    def candidates(self, query: np.ndarray, count: int, mask: _TextMask | None, nprobe: int) -> np.ndarray:
        faiss = _faiss()
        with _single_threaded_faiss(faiss):
            if mask is None:
                params = faiss.SearchParametersIVF(nprobe=self.probes(nprobe, None))
                return self.index.search(query, count, params=params)[1][0]
            bitmap = mask.bitmap  # kept referenced while faiss reads it
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersIVF(nprobe=self.probes(nprobe, mask), sel=selector)
            return self.index.search(query, count, params=params)[1][0]

    def describe(self) -> str:
        return f"faiss IVF-SQ8 ({self.nlist} lists) + float32 rescoring"


def _memory_mapped_copy(vectors: np.ndarray) -> np.ndarray:
    """The vectors in an unlinked file under the spill directory, memory-mapped copy-on-write.

    Only the pages of rows a query rescores are read; the OS may drop them again under memory pressure. The file
    has no name from the start, so it disappears with the index and never goes stale.
    """
    directory = Path(SETTINGS.index_spill_dir or SETTINGS.cache_dir / "index")
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="line-vectors-", suffix=".f32", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            for start in range(0, len(vectors), _CHUNK_ROWS):
                np.ascontiguousarray(vectors[start:start + _CHUNK_ROWS], dtype=np.float32).tofile(stream)
        return np.memmap(name, dtype=np.float32, mode="c", shape=vectors.shape)
    finally:
        try:
            os.unlink(name)
        except OSError:  # pragma: no cover - platforms that refuse to unlink a mapped file
            logger.warning("could not remove %s; delete it once the process has ended", name)


@dataclass
class LineIndex:
    """Rows (song, text) → vectors, searchable by cosine.

    Attributes:
        row_song: Song position (in ``catalog.songs``) of each row.
        row_text: Position of each row's text in ``texts``/``vectors``.
        texts: Distinct line texts (any sequence with ``len`` and indexing).
        vectors: Unit vectors of ``texts`` as a float32 tensor (in RAM for ``exact``; backed by a memory-mapped
            file for ``int8``/``ivf`` unless ``SETTINGS.index_float_vectors_in_memory``).
        backend: ``auto``, a name from ``BACKENDS`` or None (``SETTINGS.index_backend``); after construction, the
            backend in use.
        rescore_factor: int8/ivf rescore ``rescore_factor × k`` candidate texts in float32.
        nprobe: ivf lists probed per unfiltered query.
    """

    row_song: np.ndarray
    row_text: np.ndarray
    texts: Sequence[str]
    vectors: torch.Tensor
    backend: str | None = None
    rescore_factor: int = SETTINGS.index_rescore_factor
    nprobe: int = SETTINGS.index_ivf_nprobe

    def __post_init__(self) -> None:
        self.row_song = _compact_ids(self.row_song)
        self.row_text = _compact_ids(self.row_text)
        if not isinstance(self.vectors, torch.Tensor):
            self.vectors = torch.from_numpy(np.ascontiguousarray(self.vectors, dtype=np.float32))
        elif self.vectors.dtype != torch.float32:
            self.vectors = self.vectors.float()
        if self.vectors.dim() != 2:
            raise ValueError(f"vectors must be a 2-d matrix, got shape {tuple(self.vectors.shape)}")
        if len(self.texts) != len(self.vectors):
            raise ValueError(f"{len(self.texts)} texts but {len(self.vectors)} vectors")
        if len(self.row_song) != len(self.row_text):
            raise ValueError(f"{len(self.row_song)} row songs but {len(self.row_text)} row texts")
        self.backend = choose_backend(len(self.vectors), self.backend) if len(self.vectors) else "exact"
        self._mask_cache: tuple[bytes, _TextMask] | None = None
        self._searcher: _Int8Scan | _IvfScan | None = None
        if self.backend == "exact":
            return
        array = self.vectors.numpy()
        if self.backend == "int8":
            self._searcher = _Int8Scan(array)
        else:
            self._searcher = _IvfScan(array, nlist=SETTINGS.index_ivf_nlist,
                                      train_points=SETTINGS.index_ivf_train_points)
        # Rows of each text, grouped by text: text t owns _text_rows[_text_start[t]:_text_start[t + 1]].
        self._text_rows = _compact_ids(np.argsort(self.row_text, kind="stable"))
        self._text_start = _compact_ids(np.searchsorted(self.row_text[self._text_rows],
                                                        np.arange(len(self.vectors) + 1)))
        self._in_memory = bool(SETTINGS.index_float_vectors_in_memory)
        if not self._in_memory:
            self.vectors = torch.from_numpy(_memory_mapped_copy(array))

    @classmethod
    def build(cls, catalog: Catalog, embeddings: EmbeddingSet, *, backend: str | None = None) -> LineIndex:
        """The index of a catalog's rows over its embedding set (``backend`` default: ``SETTINGS.index_backend``)."""
        song_position = pd.Series(np.arange(len(catalog.songs)), index=catalog.songs["song_id"])
        text_position = pd.Series(np.arange(len(embeddings.texts)), index=pd.Index(embeddings.texts))
        rows = catalog.lines.sort_values(["song_id", "position"]).drop_duplicates(["song_id", "text"])
        rows = rows.sort_values("line_id")
        return cls(
            row_song=song_position.loc[rows["song_id"]].to_numpy(np.int64),
            row_text=text_position.loc[rows["text"]].to_numpy(np.int64),
            texts=embeddings.texts,
            vectors=torch.from_numpy(np.ascontiguousarray(embeddings.vectors, dtype=np.float32)),
            backend=backend,
        )

    def __len__(self) -> int:
        return len(self.row_song)

    def describe(self) -> str:
        """One line: the backend and its size."""
        kind = self._searcher.describe() if self._searcher else "exact float32 scan"
        if isinstance(self._searcher, _IvfScan):
            kind += f", nprobe {self.nprobe}"
        return f"{kind}; {len(self.vectors)} vectors, {len(self)} rows, {self.nbytes_per_row():.0f} B/row"

    def row_scores(self, query_vector: np.ndarray) -> torch.Tensor:
        """Exact cosine of the query with every row (vectors and query are unit length).

        On int8/ivf this reads every float32 vector from the mapped file: a reference for evaluation, not the
        search path.
        """
        return torch.from_numpy(self._row_scores(query_vector))

    def _row_scores(self, query_vector: np.ndarray) -> np.ndarray:
        query = torch.from_numpy(np.ascontiguousarray(query_vector, dtype=np.float32).reshape(-1))
        return (self.vectors @ query).numpy()[self.row_text]

    def search(self, query_vector: np.ndarray, *, allowed_songs: np.ndarray | None = None,
               k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows for a query, best first, only among rows of songs where ``allowed_songs`` is True.

        Returns:
            Row positions (int64) and their exact float32 cosines, best first, ties broken by lower row.
        """
        if self._searcher is None:
            scores = self._row_scores(query_vector)
            if allowed_songs is not None and not bool(np.all(allowed_songs)):
                scores[~np.asarray(allowed_songs, dtype=bool)[self.row_song]] = -np.inf
            return top_k_scores(scores, k)
        return self._search_rescored(query_vector, allowed_songs, int(k))

    def _search_rescored(self, query_vector: np.ndarray, allowed_songs: np.ndarray | None,
                         k: int) -> tuple[np.ndarray, np.ndarray]:
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        allowed = None
        if allowed_songs is not None:
            allowed = np.asarray(allowed_songs, dtype=bool)
            if bool(allowed.all()):
                allowed = None
        mask = self._text_mask(allowed) if allowed is not None else None
        available = mask.count if mask is not None else len(self.vectors)
        # Every candidate text has at least one allowed row, so the top k rows lie among the top k texts.
        count = min(available, max(k, k * max(int(self.rescore_factor), 1)))
        if k <= 0 or count <= 0:
            return empty
        texts = self._searcher.candidates(query, count, mask, self.nprobe)
        texts = np.sort(texts[texts >= 0])  # faiss returns each id once; sorted, the mapped file is read in order
        if not len(texts):
            return empty
        # float32 dot products of the stored vectors, single-threaded (a few hundred rows: no thread pool to wake).
        text_scores = np.einsum("ij,j->i", self.vectors.numpy()[texts], query[0])
        starts = self._text_start[texts].astype(np.int64)
        counts = self._text_start[texts + 1].astype(np.int64) - starts
        offsets = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        rows = self._text_rows[offsets].astype(np.int64)
        scores = np.repeat(text_scores, counts)
        if allowed is not None:
            keep = allowed[self.row_song[rows]]
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))[:k]
        return rows[order], scores[order]

    def _text_mask(self, allowed: np.ndarray) -> _TextMask:
        """The texts that at least one allowed row uses (the last mask is cached: a valence range repeats)."""
        key = np.packbits(allowed).tobytes() + len(allowed).to_bytes(8, "little")
        cached = self._mask_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        used = np.zeros(len(self.vectors), dtype=bool)
        used[self.row_text[allowed[self.row_song]]] = True
        count = int(used.sum())
        mask = _TextMask(np.packbits(used, bitorder="little"), count, count / max(len(self.vectors), 1))
        self._mask_cache = (key, mask)
        return mask

    def memory_report(self) -> dict[str, int]:
        """Bytes this index holds in RAM, by part.

        The memory-mapped float32 file of int8/ivf is listed as ``mapped_float32_file`` and not counted as
        resident (the OS pages in only the rescored rows and may drop them). Line texts belong to the catalog
        and are not counted.
        """
        parts = {"row_song": int(self.row_song.nbytes), "row_text": int(self.row_text.nbytes)}
        vector_bytes = int(self.vectors.numel() * self.vectors.element_size())
        if self._searcher is None:
            parts["float32_vectors"] = vector_bytes
            return parts
        parts["codes"] = int(self._searcher.nbytes())
        parts["text_rows"] = int(self._text_rows.nbytes + self._text_start.nbytes)
        if self._mask_cache is not None:
            parts["mask_cache"] = int(self._mask_cache[1].bitmap.nbytes + len(self._mask_cache[0]))
        if self._in_memory:
            parts["float32_vectors"] = vector_bytes
        else:
            parts["mapped_float32_file"] = vector_bytes
        return parts

    def nbytes(self) -> int:
        """Resident bytes of the index (``memory_report`` without the mapped file)."""
        return sum(value for key, value in self.memory_report().items() if key != "mapped_float32_file")

    def nbytes_per_row(self) -> float:
        """Resident bytes of the index per row."""
        return self.nbytes() / max(len(self), 1)
