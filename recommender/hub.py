"""Hub ids and revisions → local paths, through huggingface_hub's cache, with an offline fallback chain.

The order is fixed by the design: the pinned revision online → the same revision already in the HF cache →
(for models that allow it) the packaged MiniLM. Every fallback produces a human-readable notice that the CLI
prints and the app shows in its status line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedPath:
    """Where a Hub artifact was found.

    Attributes:
        path: Local directory holding the snapshot.
        source: ``"hub"`` (downloaded or verified online now) or ``"cache"`` (offline, from the HF cache).
        revision: The commit hash of the snapshot, when known.
        notice: Why we are not on the first choice, or None.
    """

    path: Path
    source: str
    revision: str | None
    notice: str | None = None


def resolve_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    allow_patterns: list[str] | None = None,
) -> ResolvedPath:
    """Find ``repo_id@revision`` online, else in the local HF cache.

    Raises:
        LocalEntryNotFoundError: Neither the Hub nor the cache has it.
    """
    online_error: Exception | None = None
    if not constants.HF_HUB_OFFLINE:
        try:
            path = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                          allow_patterns=allow_patterns, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT))
            return ResolvedPath(path, "hub", path.name)
        except HFValidationError:
            raise
        except Exception as error:
            online_error = error
            logger.warning("Hub unreachable for %s@%s (%s); trying the local cache", repo_id, revision, error)
    path = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                  allow_patterns=allow_patterns, local_files_only=True))
    reason = ("HF_HUB_OFFLINE is set" if online_error is None
              else f"the Hub was unreachable ({type(online_error).__name__})")
    return ResolvedPath(path, "cache", path.name, notice=f"{repo_id}: loaded from the local HF cache because {reason}")


__all__ = ["LocalEntryNotFoundError", "ResolvedPath", "resolve_snapshot"]
