"""Error types the CLI and the app turn into one clear sentence for the user (never a traceback)."""


class RecommenderError(Exception):
    """Base of every error that is the user's input or the environment, not a bug."""


class CatalogError(RecommenderError, ValueError):
    """A catalog file is missing, unreadable or does not match the schema; the message says where."""


class ModelUnavailableError(RecommenderError):
    """A model name cannot be resolved to weights here (not configured, not cached, not a local directory)."""


class EmbeddingsMismatchError(RecommenderError):
    """An embedding set does not belong to the loaded model or catalog, or its file is corrupted."""


class QueryError(RecommenderError, ValueError):
    """The query itself is unusable (empty, too long, bad valence range, bad image)."""
