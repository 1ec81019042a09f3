"""A padding-thrifty MultipleNegativesRankingLoss: the same loss, with every text of a batch embedded in
length-sorted chunks instead of padded to its column's (or the merged candidates') longest text.

An annotation batch of the CPU recipe holds 64 annotations (median 55 tokens, cut at 128) and 64 × 6 lyric lines
(median ~12 tokens). sentence-transformers embeds the anchors padded to their longest (usually 128) and the merged
candidate lines padded to the longest of all 320 lines, so about two thirds of the tokens a step pushes through the
transformer are padding: compute and activation memory spent on nothing. Mean pooling ignores padded positions,
so the embeddings and the loss are the same either way (up to float rounding and dropout sampling).
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns, merge_feature_batches
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor, nn

DEFAULT_CHUNK_ROWS = 64


def right_padded(mask: Tensor) -> bool:
    """True when every row's attention mask is ones then zeros: a prefix of a row is then the row unpadded."""
    return mask.ndim == 2 and bool((mask[:, 1:] <= mask[:, :-1]).all())


def embed_length_sorted(model: nn.Module, features_list: list[dict[str, Any]], *,
                        chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[Tensor] | None:
    """One ``sentence_embedding`` tensor per column, every text embedded in chunks of ``chunk_rows`` texts of
    similar length, each chunk cut to its own longest text. None when the batch is not a plain right-padded
    text batch (the caller then embeds it the library's way)."""
    merged = merge_feature_batches(features_list)
    if merged is None or not isinstance(merged.get("attention_mask"), Tensor) or \
            not right_padded(merged["attention_mask"]):
        return None
    mask = merged["attention_mask"]
    rows, width = mask.shape
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    chunks = []
    for chunk in order.split(chunk_rows):
        chunk_width = max(int(lengths[chunk].max()), 1)
        sub = {}
        for key, value in merged.items():
            if isinstance(value, Tensor) and value.ndim >= 2 and value.shape[0] == rows and value.shape[1] == width:
                sub[key] = value[chunk, :chunk_width]
            elif isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == rows and key != "prompt_length":
                sub[key] = value[chunk]
            else:
                sub[key] = value
        chunks.append(model(sub)["sentence_embedding"])
    embeddings = torch.cat(chunks)[torch.argsort(order)]
    return list(embeddings.split([len(features["attention_mask"]) for features in features_list]))


class LengthSortedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss whose forward embeds the batch in length-sorted chunks (see the module doc)."""

    def __init__(self, model: nn.Module, *args: Any, chunk_rows: int = DEFAULT_CHUNK_ROWS, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self.chunk_rows = chunk_rows

    def forward(self, sentence_features, labels: Tensor) -> Tensor:
        features_list = list(sentence_features)
        embeddings = embed_length_sorted(self.model, features_list, chunk_rows=self.chunk_rows)
        if embeddings is None:
            embeddings = embed_columns(self.model, features_list)
        return self.compute_loss_from_embeddings(embeddings, labels)
