"""Find songs by what their lyrics mean: catalog, encoders, embedding sets, line index and the seed ranking.

This package is a library: it never imports gradio. ``app.py`` and ``training/`` build on it.
"""

from recommender.errors import (
    CatalogError,
    EmbeddingsMismatchError,
    ModelUnavailableError,
    QueryError,
    RecommenderError,
)

__all__ = ["CatalogError", "EmbeddingsMismatchError", "ModelUnavailableError", "QueryError", "RecommenderError"]
