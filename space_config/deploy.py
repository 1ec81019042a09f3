"""Publish the app as a Hugging Face Space: ``python -m space_config.deploy --space OWNER/NAME [--dry-run]``.

What goes up (and nothing else):

* ``app.py``, ``recommender/**``, ``space_config/**`` (minus this script and the two files below);
* ``README.md`` ← ``space_config/space_README.md`` (the Space front matter) and
  ``requirements.txt`` ← ``space_config/requirements.txt`` (the Space's runtime requirements);
* ``data/default_songs.jsonl`` — the embedded default catalog the app starts on, the only file taken from ``data/``.

The files are staged in a temporary directory under their Space names and uploaded with ``upload_folder`` using the
same allow/ignore patterns, so caches (``.cache/``, ``__pycache__``), catalogs, embeddings, models, ``.env`` files
and anything looking like a secret can never be uploaded. The token is read from ``HF_TOKEN`` only and never printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub.utils import filter_repo_objects

from space_config.settings import REPO_ROOT, SETTINGS

TOKEN_ENV = "HF_TOKEN"
README_SOURCE = "space_config/space_README.md"
REQUIREMENTS_SOURCE = "space_config/requirements.txt"
DEFAULT_CATALOG = SETTINGS.default_catalog_source.relative_to(REPO_ROOT).as_posix()  # data/default_songs.jsonl
REPORT_DIR = SETTINGS.evaluation_report_dir.relative_to(REPO_ROOT).as_posix()  # the "About the models" tab
PACKAGES = ("recommender", "space_config")

# Paths in the Space that may be uploaded.
ALLOW_PATTERNS = ["app.py", "README.md", "requirements.txt", "recommender/**", "space_config/**", DEFAULT_CATALOG,
                  f"{REPORT_DIR}/*"]
# Never uploaded, even when an allow pattern matches.
IGNORE_PATTERNS = [
    "**/__pycache__/**", "*.pyc", "*.pyo",
    ".cache/**", "**/.cache/**", ".git/**", "**/.git/**", ".*", "**/.*",
    "*.env", "*.pem", "*.key", "*.p12", "token", "*/token", "*.token",
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.npy", "*.pkl", "*.parquet",
    "space_config/deploy.py", README_SOURCE, REQUIREMENTS_SOURCE,
]
# Files in the Space that a new upload replaces (so a module deleted here disappears there too).
DELETE_PATTERNS = ["recommender/**", "space_config/**", f"{REPORT_DIR}/*"]


def space_files(repo_root: str | os.PathLike = REPO_ROOT) -> dict[str, Path]:
    """``{path in the Space: local file}`` for everything that is uploaded, sorted by Space path."""
    root = Path(repo_root)
    candidates = {"app.py": root / "app.py", "README.md": root / README_SOURCE,
                  "requirements.txt": root / REQUIREMENTS_SOURCE, DEFAULT_CATALOG: root / DEFAULT_CATALOG}
    for path in sorted((root / REPORT_DIR).glob("*")):
        if path.is_file():
            candidates[path.relative_to(root).as_posix()] = path
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and not path.is_symlink():
                candidates.setdefault(path.relative_to(root).as_posix(), path)
    missing = [name for name in ("app.py", "README.md", "requirements.txt", DEFAULT_CATALOG)
               if not candidates[name].is_file()]
    if missing:
        raise FileNotFoundError(f"cannot deploy: missing {', '.join(str(candidates[name]) for name in missing)}")
    kept = filter_repo_objects(sorted(candidates), allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)
    return {name: candidates[name] for name in kept}


def stage(files: dict[str, Path], directory: Path) -> Path:
    """Copy ``files`` into ``directory`` under their Space paths."""
    for name, source in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return directory


def deploy(space: str, *, dry_run: bool = False, private: bool = False, repo_root: str | os.PathLike = REPO_ROOT,
           out=None) -> list[str]:
    """Create the Space if needed and upload the app to it; returns the uploaded Space paths.

    Raises:
        SystemExit: ``HF_TOKEN`` is not set (only checked for a real upload).
    """
    out = out or sys.stdout
    files = space_files(repo_root)
    root = Path(repo_root)
    if dry_run:
        print(f"dry run: would upload {len(files)} files to the Space {space}:", file=out)
        for name, source in files.items():
            origin = source.relative_to(root).as_posix()
            print(f"  {name}" + (f"  <- {origin}" if origin != name else ""), file=out)
        return list(files)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise SystemExit(f"{TOKEN_ENV} is not set: export a Hugging Face write token as {TOKEN_ENV}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(space, repo_type="space", space_sdk="gradio", exist_ok=True, private=private)
    with tempfile.TemporaryDirectory(prefix="space-upload-") as staging:
        stage(files, Path(staging))
        api.upload_folder(repo_id=space, repo_type="space", folder_path=staging, allow_patterns=ALLOW_PATTERNS,
                          ignore_patterns=IGNORE_PATTERNS, delete_patterns=DELETE_PATTERNS,
                          commit_message="Deploy the lyrics meaning search app")
    print(f"uploaded {len(files)} files to {url}", file=out)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m space_config.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help="the Space's repo id, OWNER/NAME")
    parser.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded, upload none")
    parser.add_argument("--private", action="store_true", help="create the Space as private (when it is new)")
    args = parser.parse_args(argv)
    if args.space.count("/") != 1 or not all(args.space.split("/")):
        parser.error(f"--space must be OWNER/NAME, got {args.space!r}")
    try:
        deploy(args.space, dry_run=args.dry_run, private=args.private)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    except Exception as error:  # HTTP errors: one line (huggingface_hub never puts the token in its messages)
        print(f"deploy failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
