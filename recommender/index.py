"""LineIndex: exact top-k over the normalized line vectors of a catalog, with the valence mask applied inside.

Index rows are the distinct (song, line text) pairs of the catalog — a chorus repeated in a song is one row,
so it cannot fill the 100 candidate slots alone. Vectors are stored once per distinct text; a query scores the
distinct texts with one matrix-vector product and gathers the row scores from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recommender.catalog import Catalog
from recommender.embeddings import EmbeddingSet
from recommender.ranking import top_k_rows


@dataclass
class LineIndex:
    """Rows (song, text) → vectors, searchable by cosine.

    Attributes:
        row_song: Song position (in ``catalog.songs``) of each row.
        row_text: Position of each row's text in ``texts``/``vectors``.
        texts: Distinct line texts.
        vectors: Unit vectors of ``texts`` as a float32 tensor.
    """

    row_song: np.ndarray
    row_text: np.ndarray
    texts: list[str]
    vectors: torch.Tensor

    def __post_init__(self) -> None:
        self._row_text_tensor = torch.from_numpy(np.array(self.row_text, dtype=np.int64))

    @classmethod
    def build(cls, catalog: Catalog, embeddings: EmbeddingSet) -> LineIndex:
        song_position = pd.Series(np.arange(len(catalog.songs)), index=catalog.songs["song_id"])
        text_position = pd.Series(np.arange(len(embeddings.texts)), index=pd.Index(embeddings.texts))
        rows = catalog.lines.sort_values(["song_id", "position"]).drop_duplicates(["song_id", "text"])
        rows = rows.sort_values("line_id")
        return cls(
            row_song=song_position.loc[rows["song_id"]].to_numpy(np.int64),
            row_text=text_position.loc[rows["text"]].to_numpy(np.int64),
            texts=embeddings.texts,
            vectors=torch.from_numpy(np.ascontiguousarray(embeddings.vectors, dtype=np.float32)),
        )

    def __len__(self) -> int:
        return len(self.row_song)

    def row_scores(self, query_vector: np.ndarray) -> torch.Tensor:
        """Cosine of the query with every row (vectors and query are unit length)."""
        query = torch.from_numpy(np.ascontiguousarray(query_vector, dtype=np.float32).reshape(-1))
        text_scores = self.vectors @ query
        return text_scores[self._row_text_tensor]

    def search(self, query_vector: np.ndarray, *, allowed_songs: np.ndarray | None = None,
               k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows for a query, best first, only among rows of songs where ``allowed_songs`` is True."""
        scores = self.row_scores(query_vector)
        if allowed_songs is not None and not bool(np.all(allowed_songs)):
            row_allowed = torch.from_numpy(np.asarray(allowed_songs, dtype=bool)[self.row_song])
            scores = scores.masked_fill(~row_allowed, float("-inf"))
        return top_k_rows(scores, k)
