"""Shared fixtures: environment for offline tests, the packaged encoder (loaded once), small catalogs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Each test session gets its own cache for the default catalog and its embeddings (never the developer's).
os.environ["LYRICS_CACHE_DIR"] = tempfile.mkdtemp(prefix="lyrics-test-cache-")

REPO_ROOT = Path(__file__).resolve().parent.parent
SONGSDATA_DIR = REPO_ROOT.parent / "shared" / "datasets" / "songsdata"


def make_catalog(songs: list[dict]):
    """A Catalog from ``[{"title", "artist", "valence", "lines": [...]}]`` (no ingestion involved)."""
    from recommender.catalog import Catalog, make_song_id

    song_rows, line_rows = [], []
    for song in songs:
        song_id = make_song_id(song["artist"], song["title"])
        song_rows.append({"song_id": song_id, "title": song["title"], "artist": song["artist"],
                          "valence": song.get("valence")})
        for position, text in enumerate(song["lines"]):
            line_rows.append({"line_id": len(line_rows), "song_id": song_id, "position": position, "text": text})
    pairs = pd.DataFrame(columns=["pair_id", "song_id", "line_ids", "fragment", "annotation"])
    return Catalog(pd.DataFrame(song_rows), pd.DataFrame(line_rows), pairs)


@pytest.fixture(scope="session")
def packaged_encoder():
    """The packaged MiniLM through the real resolution path (offline → packaged fallback)."""
    from recommender.encoders import load_encoder

    return load_encoder("baseline")


@pytest.fixture(scope="session")
def default_recommender(packaged_encoder):
    """The embedded default catalog with the baseline model (built into the session's cache once)."""
    from recommender.service import Recommender

    return Recommender.open(model="baseline")


@pytest.fixture
def small_catalog():
    return make_catalog([
        {"title": "Night Drive", "artist": "Test Band", "valence": 0.2,
         "lines": ["headlights on an empty highway", "I left your keys on the table",
                   "headlights on an empty highway"]},
        {"title": "Rain Dance", "artist": "Test Band", "valence": 0.9,
         "lines": ["we danced barefoot in the summer rain", "puddles shining like a disco floor"]},
        {"title": "Unknown Mood", "artist": "Other Artist", "valence": None,
         "lines": ["the kettle whistles in the morning", "coffee and a crossword"]},
    ])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-init StaticEmbedding model saved to disk: trains in seconds, loads like any checkpoint."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    from recommender.encoders import packaged_model_path

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(str(packaged_model_path() / "tokenizer.json"))
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=32)], device="cpu")
    directory = tmp_path_factory.mktemp("tiny") / "static-model"
    model.save(str(directory))
    return directory
