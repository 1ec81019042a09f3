"""Hub ids and revisions → local paths, through huggingface_hub's cache, with an offline fallback chain.

The order is fixed by the design: the pinned revision online → the same revision already in the HF cache →
(for models that allow it) the packaged MiniLM. Every fallback produces a human-readable notice that the CLI
prints and the app shows in its status line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError

from recommender.catalog import Catalog, replace_directory
from recommender.errors import EmbeddingsMismatchError

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
    timeout_s: float | None = None,
) -> ResolvedPath:
    """Find ``repo_id@revision`` online, else in the local HF cache — never waiting on the network for longer
    than ``timeout_s`` (default ``SETTINGS.hub_timeout_s``): the online attempt runs in a daemon thread and a
    Hub that accepts connections but never answers cannot hang start-up.

    Raises:
        LocalEntryNotFoundError: Neither the Hub (in time) nor the cache has it.
    """
    from space_config import SETTINGS

    timeout_s = SETTINGS.hub_timeout_s if timeout_s is None else timeout_s
    reason = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        outcome: dict[str, object] = {}

        def attempt() -> None:
            try:
                outcome["path"] = snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                                    allow_patterns=allow_patterns,
                                                    etag_timeout=min(constants.HF_HUB_ETAG_TIMEOUT, timeout_s))
            except Exception as error:
                outcome["error"] = error

        worker = threading.Thread(target=attempt, daemon=True, name=f"hub-resolve-{repo_id}")
        worker.start()
        worker.join(timeout_s)
        if "path" in outcome:
            path = Path(outcome["path"])  # type: ignore[arg-type]
            return ResolvedPath(path, "hub", path.name)
        error = outcome.get("error")
        if isinstance(error, HFValidationError):
            raise error
        if error is None:
            reason = f"the Hub did not answer in {timeout_s:.0f} s"
        else:
            reason = f"the Hub was unreachable ({type(error).__name__})"
        logger.warning("%s@%s: %s; trying the local cache", repo_id, revision, reason)
    path = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                  allow_patterns=allow_patterns, local_files_only=True))
    return ResolvedPath(path, "cache", path.name, notice=f"{repo_id}: loaded from the local HF cache because {reason}")


# --- Publishing catalogs and embedding sets as a Hub dataset repo -------------------------------------------------

CATALOG_PREFIX = "catalog"
EMBEDDINGS_PREFIX = "embeddings"
PULL_PATTERNS = ["README.md", f"{CATALOG_PREFIX}/*", f"{EMBEDDINGS_PREFIX}/*/*"]
_FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
MOVING_REFS = frozenset({"main", "master", "HEAD"})


def is_pinned_revision(revision: str | None) -> bool:
    """A shipped config must name a tag or a full commit hash, never a moving branch."""
    return bool(revision) and (bool(_FULL_COMMIT.match(revision)) or revision not in MOVING_REFS)


def embedding_set_name(model_name: str) -> str:
    """Folder (and dataset config) name of a model's embedding set inside the repo."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-") or "model"


def dataset_card(catalog: Catalog, manifests: list[dict], *, repo: str) -> str:
    """README.md of the dataset repo: configs per table and per model, sources, counts, licence note."""
    report = catalog.report or {}
    configs = [(name, f"{CATALOG_PREFIX}/{name}.parquet") for name in ("songs", "lines", "pairs")]
    configs += [(f"embeddings-{embedding_set_name(m['model_name'])}",
                 f"{EMBEDDINGS_PREFIX}/{embedding_set_name(m['model_name'])}/embeddings.parquet") for m in manifests]
    front = ["---", "license: other", "pretty_name: Lyrics meaning search — catalog and line embeddings",
             "tags: [lyrics, sentence-transformers, embeddings]", "configs:"]
    for name, path in configs:
        front += [f"- config_name: {name}", f"  data_files: {path}"]
    front.append("---")
    dropped = {key: value for key, value in sorted(report.items()) if isinstance(value, int) and value and
               (key.startswith(("pairs_dropped", "rows_")) or key.endswith(("_removed", "_merged")))}
    body = [
        f"# {repo}", "",
        "Catalog tables and prebuilt lyric-line embeddings for the lyrics-meaning search Space. Each embedding set "
        "is valid only for the model that made it: `manifest.json` records the model id, revision, a fingerprint "
        "of probe-sentence embeddings, the catalog hash and a checksum of the vectors; the app refuses any mismatch. "
        "`embeddings.parquet` holds one vector per distinct line text; `verses.parquet` (text models) one per verse, "
        "a run of consecutive distinct lines of a song encoded as one text, and one per song text, all of a song's "
        "distinct lines as one text; the `blend` ranking uses both.",
        "", "## Contents", "",
        f"- songs: {len(catalog.songs)}, lines: {len(catalog.lines)}, annotation pairs: {len(catalog.pairs)}",
        f"- catalog hash: `{catalog.content_hash}`",
        f"- sources: {', '.join(Path(s).name for s in report.get('sources', [])) or 'unknown'}",
        "", "| embedding set | model | revision | dimension | dtype | vectors |", "|---|---|---|---|---|---|",
    ]
    body += [f"| {embedding_set_name(m['model_name'])} | {m['model_id']} | {m.get('model_revision') or '—'} | "
             f"{m['dimension']} | {m['dtype']} (fixed-length list) | {m['count']} |" for m in manifests]
    body += ["", "## Cleaning (counts from ingest_report.json)", ""]
    body += [f"- {key}: {value}" for key, value in dropped.items()] or ["- nothing dropped"]
    body += ["", "## Licence", "",
             "Song lyrics are copyrighted by their authors and publishers. They are **not redistributable** unless "
             "the owner of this repository holds the rights; keep such a repository private. The embedded default "
             "catalog of the project is original text written for it and is free to use.", ""]
    return "\n".join(front + body)


def write_repo_layout(catalog_dir: str | os.PathLike, embeddings_dirs: list[str | os.PathLike],
                      staging: Path, *, repo: str) -> list[str]:
    """Lay out the dataset repo in ``staging``; returns the paths in the repo.

    Raises:
        EmbeddingsMismatchError: An embedding set was built for another catalog, or two sets share a name.
    """
    from recommender.embeddings import MANIFEST_FILE, VECTORS_FILE, VERSES_FILE, read_manifest

    catalog = Catalog.load(catalog_dir)
    manifests = []
    for directory in embeddings_dirs:
        manifest = read_manifest(directory)
        if manifest.get("catalog_hash") != catalog.content_hash:
            raise EmbeddingsMismatchError(f"{directory}: built for catalog {manifest.get('catalog_hash')}, not "
                                          f"{catalog_dir} ({catalog.content_hash}); rebuild before publishing")
        name = embedding_set_name(manifest["model_name"])
        if any(embedding_set_name(m["model_name"]) == name for m in manifests):
            raise EmbeddingsMismatchError(f"two embedding sets for model {manifest['model_name']!r}")
        target = staging / EMBEDDINGS_PREFIX / name
        target.mkdir(parents=True)
        shutil.copy2(Path(directory) / VECTORS_FILE, target / VECTORS_FILE)
        if (Path(directory) / VERSES_FILE).is_file():  # verse vectors (text models; see recommender.embeddings)
            shutil.copy2(Path(directory) / VERSES_FILE, target / VERSES_FILE)
        shutil.copy2(Path(directory) / MANIFEST_FILE, target / MANIFEST_FILE)
        manifests.append(manifest)
    (staging / CATALOG_PREFIX).mkdir(parents=True)
    for name in ("songs.parquet", "lines.parquet", "pairs.parquet", "ingest_report.json"):
        if (Path(catalog_dir) / name).is_file():
            shutil.copy2(Path(catalog_dir) / name, staging / CATALOG_PREFIX / name)
    (staging / "README.md").write_text(dataset_card(catalog, manifests, repo=repo))
    return sorted(str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file())


def publish(catalog_dir: str | os.PathLike, embeddings_dirs: list[str | os.PathLike], *, repo: str,
            revision: str | None = None, to_dir: str | os.PathLike | None = None, api: object | None = None) -> str:
    """Publish a catalog and its embedding sets as one atomic commit (or write the same layout to ``to_dir``).

    Returns:
        The commit hash (pin it as ``dataset_revision``), or the directory written.

    Raises:
        EmbeddingsMismatchError: A set does not belong to the catalog.
        CatalogError: The catalog is malformed.
    """
    staging = Path(tempfile.mkdtemp(prefix="lyrics-publish-"))
    try:
        paths = write_repo_layout(catalog_dir, embeddings_dirs, staging / "repo", repo=repo)
        if to_dir is not None:
            target = Path(to_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_directory(staging / "repo", target)
            return str(target)
        from huggingface_hub import CommitOperationAdd, HfApi

        api = api or HfApi()  # the token comes from HF_TOKEN in the environment, never from arguments or files
        api.create_repo(repo, repo_type="dataset", exist_ok=True, private=True)
        if revision:
            api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(staging / "repo" / path))
                      for path in paths]
        catalog_hash = Catalog.load(catalog_dir).content_hash
        sets = sorted({path.split("/")[1] for path in paths if path.startswith(f"{EMBEDDINGS_PREFIX}/")})
        info = api.create_commit(repo, operations, repo_type="dataset", revision=revision,
                                 commit_message=f"Publish catalog {catalog_hash} with embeddings {', '.join(sets)}")
        return info.oid
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- Pulling: pinned revision online → same revision in cache → caller's fallback ---------------------------------
