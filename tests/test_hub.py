"""Hub artifacts offline: publish --to-dir → a real HF cache layout → the real pull code, fallbacks, integrity."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants

from recommender import service
from recommender.__main__ import main
from recommender.hub import is_pinned_revision, publish
from space_config import SETTINGS
from tests.conftest import REPO_ROOT
from tests.hf_cache import fill_hf_cache

REPO = "test-owner/lyrics-lines"
REVISION = "a1b2c3d4" * 5


@pytest.fixture(scope="module")
def published(tmp_path_factory, packaged_encoder):
    """The default catalog and its baseline embeddings, published with --to-dir."""
    recommender = service.Recommender.open(model="baseline")
    catalog_dir = recommender.embeddings_label.rsplit("/embeddings/", 1)[0]
    layout = tmp_path_factory.mktemp("publish") / "repo"
    assert main(["publish", "--catalog", catalog_dir, "--embeddings", recommender.embeddings_label,
                 "--repo", REPO, "--to-dir", str(layout)]) == 0
    return {"layout": layout, "catalog_dir": catalog_dir, "embeddings_dir": recommender.embeddings_label,
            "local": recommender}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, published):
    """An HF cache holding the published layout at REVISION, and settings pinned to it."""
    cache = tmp_path / "hub"
    snapshot = fill_hf_cache(cache, REPO, published["layout"], repo_type="dataset", revision=REVISION, ref=None)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(service, "SETTINGS", dataclasses.replace(SETTINGS, dataset_repo=REPO,
                                                                 dataset_revision=REVISION, hub_timeout_s=3.0))
    return snapshot


def test_layout_has_tables_sets_card_and_manifest(published):
    files = sorted(str(p.relative_to(published["layout"])) for p in published["layout"].rglob("*") if p.is_file())
    assert files == ["README.md", "catalog/ingest_report.json", "catalog/lines.parquet", "catalog/pairs.parquet",
                     "catalog/songs.parquet", "embeddings/baseline/embeddings.parquet",
                     "embeddings/baseline/manifest.json", "embeddings/baseline/verses.parquet"]
    card = (published["layout"] / "README.md").read_text()
    assert "config_name: embeddings-baseline" in card and "data_files: embeddings/baseline/embeddings.parquet" in card
    assert "not redistributable" in card and "| baseline | sentence-transformers/all-MiniLM-L6-v2" in card
    vectors = pq.read_table(published["layout"] / "embeddings/baseline/embeddings.parquet").schema.field("embedding")
    assert pa.types.is_fixed_size_list(vectors.type) and vectors.type.list_size == 384


def test_pull_from_cache_serves_identical_results(hub_cache, published):
    served = service.open_serving("baseline")
    assert served.catalog_label == f"{REPO}@{REVISION[:12]} (from cache)"
    assert any("HF_HUB_OFFLINE" in notice for notice in served.notices)
    for query in ("dancing in the summer rain", "missing home", "a funeral in the rain"):
        assert served.search_text(query) == published["local"].search_text(query)


def test_pulled_set_carries_its_verses(hub_cache, published):
    served = service.open_serving("baseline")
    local = published["local"]
    assert served.verse_song is not None and served.verse_song.tolist() == local.verse_song.tolist()
    assert served.verse_vectors.numpy().tobytes() == local.verse_vectors.numpy().tobytes()
    manifest = json.loads((hub_cache / "embeddings" / "baseline" / "manifest.json").read_text())
    assert manifest["verses"]["count"] > 0 and manifest["verses"]["lines"] == SETTINGS.verse_lines
    for query in ("dancing in the summer rain", "missing home"):
        assert served.search_text(query, ranking="blend") == local.search_text(query, ranking="blend")


def test_fresh_process_with_only_the_cache_serves_the_same_answers(tmp_path, published):
    cache = tmp_path / "hub"
    fill_hf_cache(cache, REPO, published["layout"], repo_type="dataset", revision=REVISION, ref=None)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "LYRICS_DATASET_REPO": REPO,
           "LYRICS_DATASET_REVISION": REVISION, "LYRICS_CACHE_DIR": str(tmp_path / "empty-cache")}
    code = ("import json; from recommender.service import open_serving; r = open_serving('baseline'); "
            "print(json.dumps({'label': r.catalog_label, 'result': r.search_text('dancing in the summer rain')}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["label"].startswith(f"{REPO}@")
    assert payload["result"] == published["local"].search_text("dancing in the summer rain")
    assert not (tmp_path / "empty-cache").exists()  # nothing was rebuilt locally


def test_missing_revision_falls_back_to_the_embedded_default(hub_cache, monkeypatch):
    monkeypatch.setattr(service, "SETTINGS", dataclasses.replace(service.SETTINGS, dataset_revision="f" * 40))
    served = service.open_serving("baseline")
    assert served.catalog_label.startswith("embedded default")
    assert any(notice.startswith(f"FALLBACK: dataset {REPO}@{'f' * 40} is unavailable") for notice in served.notices)


def test_no_pinned_revision_serves_the_default_and_says_so(monkeypatch):
    monkeypatch.setattr(service, "SETTINGS", dataclasses.replace(SETTINGS, dataset_revision=None))
    served = service.open_serving("baseline")
    assert any("no Hub dataset revision is pinned" in notice for notice in served.notices)


def test_unreachable_hub_falls_back_to_cache(hub_cache, monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    served = service.open_serving("baseline")
    assert served.catalog_label.endswith("(from cache)")
    # huggingface_hub retries a refused connection with backoff; our bound cuts that short.
    assert any("unreachable" in notice or "did not answer" in notice for notice in served.notices)


def test_silent_hub_is_bounded_by_the_timeout(hub_cache, monkeypatch):
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections in the kernel, never answers
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setattr(service, "SETTINGS", dataclasses.replace(service.SETTINGS, hub_timeout_s=1.0))
        started = time.monotonic()
        served = service.open_serving("baseline")
        assert time.monotonic() - started < 30
        assert served.catalog_label.endswith("(from cache)")
        assert any("did not answer" in notice for notice in served.notices)
    finally:
        silent.close()


def test_tampered_vector_in_the_cache_is_refused(hub_cache):
    path = hub_cache / "embeddings/baseline/embeddings.parquet"
    table = pq.read_table(path)
    flat = table.column("embedding").combine_chunks().flatten().to_numpy().copy()
    flat[7] += 0.05
    path.unlink()
    pq.write_table(table.set_column(1, "embedding", pa.FixedSizeListArray.from_arrays(pa.array(flat), 384)), path)
    served = service.open_serving("baseline")
    assert served.catalog_label.startswith("embedded default")
    assert any("checksum" in notice for notice in served.notices)


def test_embeddings_of_another_model_are_refused(hub_cache):
    manifest_path = hub_cache / "embeddings/baseline/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["fingerprint"]["probes"] = [list(reversed(probe)) for probe in manifest["fingerprint"]["probes"]]
    manifest["model_id"] = "someone/other-model"
    manifest_path.unlink()
    manifest_path.write_text(json.dumps(manifest))
    served = service.open_serving("baseline")
    assert any("made by someone/other-model" in notice and "loaded model is" in notice for notice in served.notices)


class FakeApi:
    """Records what publish asks of the Hub (the network boundary)."""

    def __init__(self, fail_commit: bool = False):
        self.calls: list[tuple] = []
        self.fail_commit = fail_commit

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, [op.path_in_repo for op in operations], kwargs))
        if self.fail_commit:
            raise ConnectionError("connection reset")
        return type("CommitInfo", (), {"oid": "c" * 40})()


def test_publish_is_one_atomic_commit_with_every_file(published):
    api = FakeApi()
    oid = publish(published["catalog_dir"], [published["embeddings_dir"]], repo=REPO, revision="v1", api=api)
    assert oid == "c" * 40
    names = [call[0] for call in api.calls]
    assert names == ["create_repo", "create_branch", "create_commit"]
    assert api.calls[0][2] == {"repo_type": "dataset", "exist_ok": True, "private": True}
    _, repo, paths, kwargs = api.calls[2]
    expected = sorted(str(p.relative_to(published["layout"])) for p in published["layout"].rglob("*") if p.is_file())
    assert repo == REPO and paths == expected
    catalog_hash = published["local"].catalog.content_hash
    assert kwargs == {"repo_type": "dataset", "revision": "v1",
                      "commit_message": f"Publish catalog {catalog_hash} with embeddings baseline"}


def test_interrupted_publish_leaves_no_partial_revision(published):
    api = FakeApi(fail_commit=True)
    with pytest.raises(ConnectionError):
        publish(published["catalog_dir"], [published["embeddings_dir"]], repo=REPO, api=api)
    # Everything travels in the single commit that failed: no file was uploaded on its own.
    assert [call[0] for call in api.calls] == ["create_repo", "create_commit"]


def test_publishing_a_set_of_another_catalog_is_refused(published, small_catalog, tmp_path, capsys):
    small_catalog.save(tmp_path / "other")
    assert main(["publish", "--catalog", str(tmp_path / "other"), "--embeddings", published["embeddings_dir"],
                 "--repo", REPO, "--to-dir", str(tmp_path / "out")]) == 2
    assert "rebuild before publishing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_revision_is_pinned_or_absent():
    assert SETTINGS.dataset_revision is None or is_pinned_revision(SETTINGS.dataset_revision)
    assert is_pinned_revision("v1.0") and is_pinned_revision("a" * 40)
    assert not is_pinned_revision("main") and not is_pinned_revision(None)
