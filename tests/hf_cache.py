"""Fill a temporary Hugging Face cache with artifacts the tests made, in the real cache layout.

Only the network boundary is faked: the code under test runs huggingface_hub's real cache lookup
(``snapshot_download(..., local_files_only=True)``) against this directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def fill_hf_cache(cache_dir: Path, repo_id: str, source_dir: Path, *, repo_type: str = "model",
                  revision: str = "0" * 40, ref: str | None = "main") -> Path:
    """Copy ``source_dir`` into ``cache_dir`` as snapshot ``revision`` of ``repo_id`` and point ``ref`` at it."""
    folder = cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    shutil.copytree(source_dir, snapshot, dirs_exist_ok=True)
    if ref:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(revision)
    return snapshot
