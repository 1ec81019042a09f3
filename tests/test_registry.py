"""Model registry: configured + artifact models, availability probed once (with the reason), one Recommender each."""

from __future__ import annotations

import json
import threading
import time

import pytest

from recommender.errors import ModelUnavailableError
from recommender.registry import ARTIFACTS_ENV, ModelRegistry, artifacts_dir, discover_artifacts
from space_config import SETTINGS


class FakeEncoder:
    def __init__(self, target: str, kind: str = "text", notice: str | None = None):
        self.target, self.kind, self.notice = target, kind, notice

    def describe(self) -> str:
        return f"fake {self.target}"


def make_model_dir(path, marker: str):
    path.mkdir(parents=True)
    (path / marker).write_text(json.dumps({}))
    return path


@pytest.fixture
def artifacts(tmp_path):
    root = tmp_path / "artifacts"
    make_model_dir(root / "my-minilm", "modules.json")
    make_model_dir(root / "my-clip", "open_clip_config.json")
    make_model_dir(root / "run-7" / "model", "modules.json")  # what training/finetune.py writes
    make_model_dir(root / "baseline", "modules.json")  # collides with a configured name
    (root / "notes").mkdir()  # no model inside: ignored
    (root / "run-7" / "checkpoints").mkdir()
    (root / "README.txt").write_text("not a model")
    return root


def test_discovers_text_and_clip_model_directories(artifacts):
    entries = {entry.name: entry for entry in discover_artifacts(artifacts, {"baseline"})}
    assert set(entries) == {"artifacts/baseline", "my-clip", "my-minilm", "run-7"}
    assert entries["my-clip"].kind == "clip" and entries["my-minilm"].kind == "text"
    assert entries["run-7"].target == str((artifacts / "run-7" / "model").resolve())
    assert all(entry.source == "artifacts" and entry.available is None for entry in entries.values())
    assert discover_artifacts(artifacts / "missing", set()) == []


def test_artifacts_dir_comes_from_the_environment(monkeypatch, tmp_path):
    from space_config.settings import Settings

    monkeypatch.setenv(ARTIFACTS_ENV, str(tmp_path))
    assert Settings().artifacts_dir == tmp_path
    monkeypatch.delenv(ARTIFACTS_ENV)
    assert Settings().artifacts_dir.name == "artifacts"
    assert artifacts_dir() == SETTINGS.artifacts_dir


def test_lists_configured_models_first_then_artifacts(artifacts):
    registry = ModelRegistry(artifacts=artifacts, loader=FakeEncoder)
    names = registry.names()
    configured = [spec.name for spec in SETTINGS.models]
    assert names[: len(configured)] == configured
    assert names[len(configured):] == ["artifacts/baseline", "my-clip", "my-minilm", "run-7"]
    assert registry.names("clip") == ["clip", "my-clip"]


def test_probe_records_availability_and_reasons_once():
    calls = []

    def loader(target):
        calls.append(target)
        if target == "finetuned":
            raise ModelUnavailableError("model 'finetuned' is not available: not in the local HF cache")
        if target == "clip":
            raise OSError("corrupt weights")
        return FakeEncoder(target, notice="FALLBACK: packaged" if target == "distilroberta" else None)

    registry = ModelRegistry(artifacts="/nonexistent", loader=loader)
    entries = {entry.name: entry for entry in registry.probe_all()}
    assert entries["baseline"].available is True and entries["baseline"].reason == ""
    assert entries["baseline"].loaded == "fake baseline"
    assert entries["distilroberta"].available is True and entries["distilroberta"].reason == "FALLBACK: packaged"
    assert entries["finetuned"].available is False and "not in the local HF cache" in entries["finetuned"].reason
    assert entries["clip"].available is False and entries["clip"].reason == "OSError: corrupt weights"
    registry.probe_all()
    assert sorted(calls) == sorted(spec.name for spec in SETTINGS.models)  # cached: each model loaded once
    public = entries["finetuned"].public()
    assert set(public) == {"name", "kind", "source", "available", "reason"} and public["available"] is False


def test_background_probing_fills_the_list():
    release = threading.Event()

    def slow_loader(target):
        release.wait(5)
        return FakeEncoder(target)

    registry = ModelRegistry(artifacts="/nonexistent", loader=slow_loader)
    registry.start_probing()
    assert registry.start_probing() is registry.start_probing()  # idempotent
    assert all(entry.public()["reason"] == "checking…" for entry in registry.list_models())
    release.set()
    entries = registry.list_models(wait=10)
    assert registry.probing_done and all(entry.available for entry in entries)


def test_open_refuses_unknown_and_unavailable_models_with_the_reason():
    def loader(target):
        if target == "finetuned":
            raise ModelUnavailableError("not in the local HF cache")
        return FakeEncoder(target)

    registry = ModelRegistry(artifacts="/nonexistent", loader=loader, opener=lambda target: object())
    with pytest.raises(ModelUnavailableError, match="unknown model 'gpt-17'"):
        registry.open("gpt-17")
    with pytest.raises(ModelUnavailableError, match="unknown model"):
        registry.open("/etc")  # never an arbitrary directory or Hub id from a caller
    with pytest.raises(ModelUnavailableError, match="'finetuned' is unavailable: not in the local HF cache"):
        registry.open("finetuned")


def test_open_loads_each_model_once_under_concurrency():
    opened = []

    def opener(target):
        time.sleep(0.05)
        opened.append(target)
        return object()

    registry = ModelRegistry(artifacts="/nonexistent", loader=FakeEncoder, opener=opener)
    results = []
    threads = [threading.Thread(target=lambda: results.append(registry.open("baseline"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == ["baseline"] and len({id(result) for result in results}) == 1
    assert registry.is_open("baseline") and not registry.is_open("distilroberta")


def test_real_probe_of_a_tiny_clip_directory_and_offline_finetuned(tmp_path):
    from tests.tiny_clip import build_tiny_clip

    build_tiny_clip(tmp_path / "artifacts" / "tiny-clip")
    registry = ModelRegistry(artifacts=tmp_path / "artifacts")
    tiny = registry.probe("tiny-clip")
    assert tiny.available is True and tiny.kind == "clip" and tiny.source == "artifacts"
    assert str(tmp_path) in tiny.loaded
    finetuned = registry.probe("finetuned")  # HF_HUB_OFFLINE and not cached here: unavailable, with the reason
    assert finetuned.available is False and "lyrics-meaning/minilm-lyrics-annotations" in finetuned.reason


def test_library_modules_never_import_gradio():
    import subprocess
    import sys

    code = ("import sys, recommender.registry, recommender.projection; "
            "sys.exit(1 if 'gradio' in sys.modules else 0)")
    from tests.conftest import REPO_ROOT

    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT).returncode == 0
