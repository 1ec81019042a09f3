"""Catalog map: a 2-D projection of song vectors, so a query can be shown among the songs it is compared with.

A song's vector is the mean of its (distinct) line vectors, normalized. The 2-D map is the songs' first two
principal components (``torch.pca_lowrank`` with a fixed seed, signs fixed so the picture is stable), fitted once
per loaded embedding set and cached; a query vector (text or, for CLIP, image) is projected with the same fit.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import torch

SEED = 0
PCA_EXTRA_COMPONENTS = 30  # oversampling of the randomized PCA (exact when the data has fewer dimensions)
PCA_ITERATIONS = 6


@dataclass(frozen=True)
class SongMap:
    """The fitted projection of one embedding set.

    Attributes:
        mean: Mean song vector (the PCA centre), shape ``[d]``.
        components: Projection matrix, shape ``[d, 2]`` (a zero column when there is no second direction).
        xy: Song coordinates, shape ``[n_songs, 2]``, in catalog order.
        valence: Song valence (NaN where unknown), shape ``[n_songs]``.
        titles: Song titles in catalog order.
        artists: Song artists in catalog order.
    """

    mean: torch.Tensor
    components: torch.Tensor
    xy: np.ndarray
    valence: np.ndarray
    titles: list[str]
    artists: list[str]

    def project(self, vector) -> tuple[float, float]:
        """Coordinates of one vector (normalized first) in this map."""
        query = torch.as_tensor(np.asarray(vector, dtype=np.float32).reshape(-1))
        if query.shape[0] != self.mean.shape[0]:
            raise ValueError(f"vector has dimension {query.shape[0]}, the map was fitted on {self.mean.shape[0]}")
        query = query / query.norm().clamp_min(1e-12)
        x, y = ((query - self.mean) @ self.components).tolist()
        return float(x), float(y)


def song_vectors(recommender) -> torch.Tensor:
    """Unit mean of each song's line vectors, shape ``[n_songs, d]`` (a song without lines gets a zero row)."""
    index = recommender.index
    n_songs = len(recommender.catalog.songs)
    row_vectors = index.vectors[torch.from_numpy(np.array(index.row_text, dtype=np.int64))]
    song_of_row = torch.from_numpy(np.array(index.row_song, dtype=np.int64))
    sums = torch.zeros(n_songs, row_vectors.shape[1], dtype=torch.float32).index_add_(0, song_of_row,
                                                                                       row_vectors.float())
    return sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)


def fit_song_map(recommender) -> SongMap:
    """Fit the 2-D projection of ``recommender``'s songs (no caching: see :func:`get_song_map`)."""
    vectors = song_vectors(recommender)
    n_songs, dimension = vectors.shape
    mean = vectors.mean(dim=0) if n_songs else torch.zeros(dimension)
    components = torch.zeros(dimension, 2)
    rank = min(n_songs - 1, dimension)  # centred data of n points spans at most n-1 directions
    if rank >= 1:
        q = min(2 + PCA_EXTRA_COMPONENTS, n_songs, dimension)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            _, _, directions = torch.pca_lowrank(vectors, q=q, center=True, niter=PCA_ITERATIONS)
        kept = directions[:, : min(2, rank)]
        # An eigenvector's sign is arbitrary: make each one's largest loading positive, so the map never flips.
        signs = torch.sign(kept[kept.abs().argmax(dim=0), torch.arange(kept.shape[1])])
        components[:, : kept.shape[1]] = kept * torch.where(signs == 0, torch.ones_like(signs), signs)
    xy = ((vectors - mean) @ components).numpy().astype(np.float64)
    songs = recommender.catalog.songs
    valence = songs["valence"].to_numpy(dtype=np.float64, na_value=np.nan)
    return SongMap(mean, components, xy, valence, [str(t) for t in songs["title"]],
                   [str(a) for a in songs["artist"]])


_cache: dict[int, SongMap] = {}
_cache_lock = threading.Lock()


def get_song_map(recommender) -> SongMap:
    """The projection of ``recommender``'s embedding set, fitted on first use and cached while that set is loaded."""
    index = recommender.index
    key = id(index)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    fitted = fit_song_map(recommender)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = fitted
            weakref.finalize(index, _cache.pop, key, None)  # forget the fit when the index is garbage-collected
        return _cache[key]


def song_map(recommender) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(xy [n_songs, 2], valence [n_songs] (NaN unknown), titles)`` of the catalog map, in catalog order."""
    fitted = get_song_map(recommender)
    return fitted.xy, fitted.valence, fitted.titles


def project(recommender, vector) -> tuple[float, float]:
    """Where a query vector (same model as the embedding set) falls on the catalog map."""
    return get_song_map(recommender).project(vector)
