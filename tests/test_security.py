"""Security: the token stays secret, gradio is pinned past its file-access fixes, the app serves no file of the
server's, input limits are enforced, and nothing in the source tree evaluates, unpickles or runs remote code.

The Hub is replaced by a loopback HTTP server that records the ``Authorization`` header it receives and answers
401, so the token is provably *used* (sent to the configured endpoint) while we check it is never *printed*.
See SECURITY.md for the threat model these tests pin down.
"""

from __future__ import annotations

import ast
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import app
from recommender.errors import QueryError
from space_config import SETTINGS
from tests.conftest import REPO_ROOT

FAKE_TOKEN = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmPlOkIjUh"
assert len(FAKE_TOKEN) == 37 and FAKE_TOKEN[3:].isalpha()
TOKEN_FRAGMENTS = (FAKE_TOKEN, FAKE_TOKEN[3:], FAKE_TOKEN[-20:])  # also a token cut short or without its prefix


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for fragment in TOKEN_FRAGMENTS:
            assert fragment not in text, f"the token leaked: …{text[max(text.find(fragment) - 200, 0):][:400]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHub(http.server.ThreadingHTTPServer):
    """A fake Hub on loopback: records every Authorization header, answers 401 (never retried by huggingface_hub)."""

    daemon_threads = True

    def __init__(self):
        self.authorizations: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization") or "")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Message", "Invalid credentials in Authorization header")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def recording_hub():
    hub = RecordingHub()
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.shutdown()
        hub.server_close()


def online_env(hub: RecordingHub, tmp_path: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGING"))}
    env.update({"HF_TOKEN": FAKE_TOKEN, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_DISABLE_TELEMETRY": "1",
                "GRADIO_ANALYTICS_ENABLED": "False", "TRANSFORMERS_VERBOSITY": "info",
                "LYRICS_CACHE_DIR": os.environ["LYRICS_CACHE_DIR"], "LYRICS_ARTIFACTS_DIR": str(tmp_path / "none")})
    return env


def run(command: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# --- HF_TOKEN: read from the environment only, never printed or logged -------------------------------------------


@pytest.fixture(scope="module")
def published_inputs(default_recommender):
    """The embedded default catalog and its baseline embedding set (built by the session fixture)."""
    embeddings_dir = default_recommender.embeddings_label
    return embeddings_dir.rsplit("/embeddings/", 1)[0], embeddings_dir


@pytest.mark.slow
def test_token_never_appears_in_cli_or_deploy_output(recording_hub, tmp_path, published_inputs):
    catalog_dir, embeddings_dir = published_inputs
    env = online_env(recording_hub, tmp_path)
    python = sys.executable
    commands = {
        "search": [python, "-m", "recommender", "-v", "search", "dancing in the summer rain", "--json"],
        "publish --to-dir": [python, "-m", "recommender", "-v", "publish", "--catalog", catalog_dir, "--embeddings",
                             embeddings_dir, "--repo", "owner/lyrics-lines", "--to-dir", str(tmp_path / "review")],
        "publish (push refused)": [python, "-m", "recommender", "-v", "publish", "--catalog", catalog_dir,
                                   "--embeddings", embeddings_dir, "--repo", "owner/lyrics-lines"],
        "deploy --dry-run": [python, "-m", "space_config.deploy", "--space", "owner/lyrics", "--dry-run"],
        "deploy (push refused)": [python, "-m", "space_config.deploy", "--space", "owner/lyrics"],
    }
    outcomes = {name: run(command, env) for name, command in commands.items()}
    for done in outcomes.values():
        assert_no_token(done.stdout, done.stderr)
    assert outcomes["search"].returncode == 0 and json.loads(outcomes["search"].stdout)["results"]
    assert outcomes["publish --to-dir"].returncode == 0 and (tmp_path / "review" / "README.md").is_file()
    assert outcomes["deploy --dry-run"].returncode == 0 and "would upload" in outcomes["deploy --dry-run"].stdout
    assert outcomes["publish (push refused)"].returncode != 0
    assert outcomes["deploy (push refused)"].returncode == 1
    assert "deploy failed" in outcomes["deploy (push refused)"].stderr
    # The token was really in play: it went, as a header, to the configured (loopback) endpoint only.
    assert f"Bearer {FAKE_TOKEN}" in recording_hub.authorizations
    # No file the publish wrote carries it either.
    for path in (tmp_path / "review").rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json"):
            assert_no_token(path.read_text(errors="replace"))


def test_token_never_logged_in_process(recording_hub, tmp_path, published_inputs, monkeypatch, caplog, capsys):
    """publish and deploy in-process against the refusing fake Hub: caplog (DEBUG) and captured output stay clean."""
    import logging

    from huggingface_hub import constants

    from recommender.hub import publish
    from space_config import deploy

    catalog_dir, embeddings_dir = published_inputs
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", recording_hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as caught:
        publish(catalog_dir, [embeddings_dir], repo="owner/lyrics-lines")
    assert deploy.main(["--space", "owner/lyrics"]) == 1
    out, err = capsys.readouterr()
    assert_no_token(caplog.text, out, err, str(caught.value), repr(caught.value))
    assert f"Bearer {FAKE_TOKEN}" in recording_hub.authorizations


@pytest.mark.slow
def test_token_never_appears_in_the_apps_startup_output(recording_hub, tmp_path):
    """``python app.py`` with the token in its environment: start, warm up, answer, stop — the output stays clean."""
    from gradio_client import Client

    port = free_port()
    env = {**online_env(recording_hub, tmp_path), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port)}
    log = tmp_path / "app.log"
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-3000:]
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/")
                    if connection.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            client = Client(url, verbose=False)
            assert client.predict("dancing in the summer rain", api_name="/search_text")["results"]
            models = client.predict(api_name="/models")
            assert_no_token(json.dumps(models))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
    output = log.read_text()
    assert "Running on local URL" in output or "127.0.0.1" in output
    assert_no_token(output)
    assert f"Bearer {FAKE_TOKEN}" in recording_hub.authorizations  # the model probes did ask the (fake) Hub


def test_token_is_read_from_the_environment_only():
    """No module reads a token from a file, an argument or a hard-coded string: only HF_TOKEN / huggingface_hub."""
    offenders = []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        if path.name == Path(__file__).name:
            continue
        if re.search(r"hf_[A-Za-z]{30,}", text):
            offenders.append(f"{path}: a literal that looks like a token")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.keyword) and node.arg == "token" and not (
                    (isinstance(node.value, ast.Name) and node.value.id == "token")
                    or (isinstance(node.value, ast.Attribute) and node.value.attr == "token")):
                offenders.append(f"{path}:{node.lineno}: token= passed something other than the env value")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value.endswith(("huggingface/token", "hf/token", "stored_tokens")) or node.value == "--token"):
                offenders.append(f"{path}:{node.lineno}: reads a token file or takes a --token argument")
    assert not offenders, offenders
    deploy_source = (REPO_ROOT / "space_config" / "deploy.py").read_text()
    assert 'os.environ.get(TOKEN_ENV)' in deploy_source and 'TOKEN_ENV = "HF_TOKEN"' in deploy_source


# --- gradio version --------------------------------------------------------------------------------------------


def test_gradio_is_pinned_at_6_20_or_later():
    import gradio
    from huggingface_hub.repocard import metadata_load
    from packaging.requirements import Requirement
    from packaging.version import Version

    assert Version(gradio.__version__) >= Version("6.20")
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    (requirement,) = [Requirement(line) for line in lines if line and Requirement(line).name.lower() == "gradio"]
    assert Version(gradio.__version__) in requirement.specifier
    for older in ("6.19.99", "6.19.0", "6.0.0", "5.50.0", "4.44.1", "3.50.2"):
        assert Version(older) not in requirement.specifier, f"requirements.txt allows gradio {older}"
    space = metadata_load(REPO_ROOT / "space_config" / "space_README.md")
    assert Version(str(space["sdk_version"])) >= Version("6.20")


# --- the launched app: no file of the server's is ever served ----------------------------------------------------


@pytest.fixture(scope="module")
def secure_app(tmp_path_factory, default_recommender):
    """The real app on 127.0.0.1 with the tiny CLIP; yields its port."""
    from recommender.registry import ModelRegistry
    from tests.test_app import TINY, launched
    from tests.tiny_clip import build_tiny_clip

    artifacts = tmp_path_factory.mktemp("secure-artifacts")
    build_tiny_clip(artifacts / TINY)
    with launched(ModelRegistry(artifacts=artifacts)) as url:
        yield int(urllib.parse.urlsplit(url).port)


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET exactly ``path`` (no client-side normalization of ``..`` or percent-escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def file_probes(port: int) -> list[tuple[str, bytes]]:
    """``(request path, bytes that must not come back)``."""
    from gradio.utils import get_upload_folder

    passwd = b"root:"
    app_py = b"RESPONSIBLE_USE"
    songs = (REPO_ROOT / "data" / "default_songs.jsonl").read_bytes()[:40]
    upload = Path(get_upload_folder()).resolve()
    cache = Path(os.environ["LYRICS_CACHE_DIR"])
    cached_catalog = next(cache.glob("default-catalog-*/songs.parquet"), cache / "missing")
    quoted = urllib.parse.quote
    probes = [
        ("/gradio_api/file=/etc/passwd", passwd),
        ("/gradio_api/file=../../etc/passwd", passwd),
        ("/gradio_api/file=../../../../../../../../../etc/passwd", passwd),
        ("/gradio_api/file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", passwd),
        ("/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", passwd),
        ("/gradio_api/file=%252e%252e%252f%252e%252e%252fetc%252fpasswd", passwd),
        ("/gradio_api/file=..%5c..%5c..%5c..%5cetc%5cpasswd", passwd),
        ("/gradio_api/file=%2Fetc%2Fpasswd", passwd),
        ("/gradio_api/file=/etc/passwd%00.png", passwd),
        ("/gradio_api/file=file:///etc/passwd", passwd),
        (f"/gradio_api/file={upload}/../../../../etc/passwd", passwd),
        (f"/gradio_api/file={quoted(str(upload))}%2F..%2F..%2F..%2Fetc%2Fpasswd", passwd),
        ("/gradio_api/file//etc/passwd", passwd),
        ("/gradio_api/file/../../etc/passwd", passwd),
        ("/file=/etc/passwd", passwd),
        ("/gradio_api/file=/proc/self/environ", b"PATH="),
        (f"/gradio_api/file={REPO_ROOT / 'app.py'}", app_py),
        ("/gradio_api/file=app.py", app_py),
        ("/gradio_api/file=./app.py", app_py),
        (f"/gradio_api/file={REPO_ROOT / 'data' / 'default_songs.jsonl'}", songs),
        ("/gradio_api/file=data/default_songs.jsonl", songs),
        (f"/gradio_api/file={cached_catalog}", b"PAR1"),
        (f"/gradio_api/file=http://127.0.0.1:{port}/config", b"\"components\""),
        (f"/gradio_api/proxy=http://127.0.0.1:{port}/config", b"\"components\""),
        ("/static/../../../../etc/passwd", passwd),
        ("/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd", passwd),
        ("/gradio_api/custom_component/x/client/../../../../etc/passwd", passwd),
    ]
    return probes


def test_no_file_outside_the_apps_temp_dir_is_served(secure_app):
    refused = 0
    for path, secret in file_probes(secure_app):
        status, body = raw_get(secure_app, path)
        assert secret not in body, f"{path} served content ({status})"
        assert status in (400, 403, 404, 405, 422), f"{path}: HTTP {status}"
        refused += 1
    assert refused >= 25


def test_an_uploaded_file_is_served_back_but_nothing_beside_it(secure_app, tmp_path):
    """Positive control: the route works for the app's own upload folder, so the refusals above are meaningful."""
    import httpx

    picture = tmp_path / "mine.txt"
    picture.write_bytes(b"my own upload")
    with picture.open("rb") as handle:
        response = httpx.post(f"http://127.0.0.1:{secure_app}/gradio_api/upload",
                              files={"files": ("mine.txt", handle, "text/plain")}, timeout=30)
    assert response.status_code == 200
    (stored,) = response.json()
    status, body = raw_get(secure_app, f"/gradio_api/file={urllib.parse.quote(stored)}")
    assert status == 200 and body == b"my own upload"
    escape = f"/gradio_api/file={urllib.parse.quote(str(Path(stored).parent))}/../../../../etc/passwd"
    status, body = raw_get(secure_app, escape)
    assert status in (403, 404) and b"root:" not in body


def search_image_raw(port: int, image: object, model: str = "tiny-clip") -> str:
    """POST /gradio_api/call/search_image with ``image`` as raw JSON (what a hostile client sends), then read the
    event stream. gradio_client would upload a local ``path`` itself; this does not."""
    import httpx

    base = f"http://127.0.0.1:{port}/gradio_api/call/search_image"
    joined = httpx.post(base, json={"data": [image, model, 0.0, 1.0, 3]}, timeout=30)
    if joined.status_code != 200:
        return f"HTTP {joined.status_code}: {joined.text}"
    return httpx.get(f"{base}/{joined.json()['event_id']}", timeout=120).text


def test_search_image_never_reads_a_path_the_caller_names(secure_app):
    from gradio.utils import get_upload_folder

    upload = Path(get_upload_folder())
    link = upload / "security-test" / "link.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")  # inside the upload folder, resolving outside it
    meta = {"_type": "gradio.FileData"}
    hostile = [
        "/etc/passwd", {"path": "/etc/passwd"}, {"path": "/etc/passwd", "meta": meta},
        {"path": f"{upload}/../../../../etc/passwd", "meta": meta}, {"path": f"{upload}/../../../../etc/passwd"},
        {"path": str(REPO_ROOT / "app.py"), "meta": meta, "orig_name": "app.png"},
        {"path": str(REPO_ROOT / "data" / "default_songs.jsonl")}, {"path": "/proc/self/environ", "meta": meta},
        {"path": str(link), "meta": meta}, {"path": str(link)}, {"path": str(upload)},
        {"path": None, "url": f"http://127.0.0.1:{secure_app}/config", "meta": meta},
        {"url": "file:///etc/passwd", "meta": meta}, {"path": ["/etc/passwd"]}, 42, None,
    ]
    for image in hostile:
        stream = search_image_raw(secure_app, image)
        assert "event: complete" not in stream and "event: error" in stream, (image, stream[:300])
        assert "root:" not in stream and "RESPONSIBLE_USE" not in stream, (image, stream[:300])


def test_search_image_refuses_outside_paths_through_gradio_client(secure_app, tmp_path):
    """Through gradio_client a bare path or ``{"path": ...}`` without meta is not uploaded: the app refuses it."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(f"http://127.0.0.1:{secure_app}/", verbose=False)
    for image in ("/etc/passwd", {"path": "/etc/passwd"}, {"path": str(REPO_ROOT / "app.py")}):
        with pytest.raises(AppError, match="must be uploaded with the request"):
            client.predict(image, "tiny-clip", api_name="/search_image")
    from PIL import Image

    picture = tmp_path / "ok.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(picture)
    assert client.predict(handle_file(str(picture)), "tiny-clip", api_name="/search_image")["results"]


def test_upload_path_refuses_symlinks_and_directories(tmp_path):
    from gradio.utils import get_upload_folder

    upload = Path(get_upload_folder())
    link = upload / "security-unit" / "to-hostname.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to("/etc/hostname")
    for value in ({"path": str(link)}, str(link), {"path": str(upload)}, {"path": str(link.parent)},
                  {"path": f"{upload}/./../{upload.name}/../../etc/passwd"}, {"path": ""}, {"path": 3}):
        with pytest.raises(QueryError):
            app.upload_path(value)


def test_the_app_has_no_file_path_inputs():
    """No component or API parameter takes a server path: the only file input is an upload."""
    import gradio as gr

    inputs = {id(block): block for fn in app.demo.fns.values() for block in fn.inputs}.values()
    file_like = (gr.File, gr.UploadButton, gr.FileExplorer, gr.Model3D, gr.Video, gr.Audio, gr.Image)
    file_inputs = [block for block in inputs if isinstance(block, file_like)]
    assert len(file_inputs) == 1 and isinstance(file_inputs[0], gr.Image)
    assert file_inputs[0].sources == ["upload", "clipboard"] and file_inputs[0].type == "filepath"
    # Any other picture on the page is display-only (gradio serves a copy from its own cache folder).
    for block in app.demo.blocks.values():
        if isinstance(block, file_like) and block is not file_inputs[0]:
            assert block.interactive is False, block
    info = app.demo.get_api_info()["named_endpoints"]
    assert set(info) == {"/search_text", "/search_image", "/compare", "/models"}
    for name, endpoint in info.items():
        for parameter in endpoint["parameters"]:
            if parameter["parameter_name"] == "image":
                assert name == "/search_image"
            else:
                assert "path" not in json.dumps(parameter["type"]).lower(), (name, parameter)


def test_models_endpoint_reveals_no_server_paths(secure_app):
    from gradio_client import Client

    models = json.dumps(Client(f"http://127.0.0.1:{secure_app}/", verbose=False).predict(api_name="/models"))
    for secret in (str(REPO_ROOT), os.environ["LYRICS_CACHE_DIR"], "/tmp/"):
        assert secret not in models


def test_a_broken_artifacts_model_is_listed_without_its_server_path(tmp_path):
    from recommender.registry import ModelRegistry

    broken = tmp_path / "artifacts" / "half-copied-clip"
    broken.mkdir(parents=True)
    (broken / "open_clip_config.json").write_text("{}")  # weights never arrived
    registry = ModelRegistry(artifacts=tmp_path / "artifacts")
    entry = registry.probe("half-copied-clip")
    assert entry.available is False
    assert str(tmp_path) not in json.dumps(entry.public()), entry.public()


# --- limits: query length, results count, image bytes and pixels, uploads, queue --------------------------------


def test_query_length_and_results_count_limits_are_enforced_by_the_service(default_recommender):
    limit, most = SETTINGS.max_query_chars, SETTINGS.max_top_n
    assert default_recommender.search_text("a" * limit, top_n=1)["results"]
    with pytest.raises(QueryError, match=f"the limit is {limit}"):
        default_recommender.search_text("a" * (limit + 1))
    result = default_recommender.search_text("rain", top_n=most)
    assert SETTINGS.default_top_n < len(result["results"]) <= most  # songs among the top-100 lines, at most top_n
    assert all(len(song["lines"]) <= SETTINGS.top_k_lines for song in result["results"])
    for bad in (0, most + 1, -1, 2.5, float("inf"), float("nan"), "many", None):
        with pytest.raises(QueryError, match="top_n"):
            default_recommender.search_text("rain", top_n=bad)


def test_limits_are_enforced_by_the_app(secure_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(f"http://127.0.0.1:{secure_app}/", verbose=False)
    limit, most = SETTINGS.max_query_chars, SETTINGS.max_top_n
    assert client.predict("b" * limit, "baseline", 0, 1, 1, api_name="/search_text")["results"]
    with pytest.raises(AppError, match="too long"):
        client.predict("b" * (limit + 1), api_name="/search_text")
    assert len(client.predict("rain", "baseline", 0, 1, most, api_name="/search_text")["results"]) <= most
    with pytest.raises(AppError, match="top_n"):
        client.predict("rain", "baseline", 0, 1, most + 1, api_name="/search_text")
    with pytest.raises(AppError, match="top_n"):
        client.predict("rain", 0, 1, most + 1, api_name="/compare")
    # The UI widgets carry the same limits, and uploads over 10 MB never reach the handlers.
    query_box = next(block for block in app.demo.blocks.values() if getattr(block, "elem_id", None) == "query-box")
    assert query_box.max_length == limit
    songs = next(block for block in app.demo.blocks.values() if getattr(block, "label", None) == "Songs")
    assert songs.maximum == most
    assert app.LAUNCH_KWARGS["max_file_size"] == app.MAX_FILE_SIZE == "10mb"
    assert app.demo.max_file_size == 10 * 1024 * 1024
    import httpx

    too_big = httpx.post(f"http://127.0.0.1:{secure_app}/gradio_api/upload",
                         files={"files": ("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024 + 1))},
                         timeout=60)
    assert too_big.status_code == 413


def test_queue_and_concurrency_limits():
    assert app.demo._queue.max_size == app.QUEUE_MAX_SIZE == 16
    assert app.CONCURRENCY_LIMIT == 2 and app.demo._queue.default_concurrency_limit == 2
    limits = {fn.api_name: fn.concurrency_limit for fn in app.demo.fns.values()}
    for name in ("search_text", "search_image", "compare", "on_search", "on_image_search", "on_compare"):
        assert limits[name] == "default", (name, limits[name])  # the 2 shared slots, never unbounded
    assert limits["models"] is None and limits["on_page_load"] is None  # cheap: no model work


def test_image_byte_and_pixel_limits(tmp_path):
    import struct
    import zlib

    from recommender import images

    assert images.MAX_IMAGE_PIXELS == 40_000_000 and images.MAX_IMAGE_BYTES == 20 * 1024 * 1024
    assert images.MAX_IMAGE_BYTES >= 10 * 1024 * 1024  # the app's upload limit is the stricter one

    def png_claiming(width: int, height: int) -> bytes:
        def chunk(kind, payload):
            return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))

    started = time.perf_counter()
    for width, height in ((8000, 5001), (6325, 6325), (40_000_001, 1), (65535, 65535)):
        with pytest.raises(QueryError, match="decompression bomb"):
            images.load_image(png_claiming(width, height))
    assert time.perf_counter() - started < 2  # refused from the header: nothing was decoded
    with pytest.raises(QueryError, match="images may be at most 20 MB"):
        images.load_image(b"\x89PNG" + b"\0" * images.MAX_IMAGE_BYTES)


# --- the source tree: no eval, no pickle, no remote code --------------------------------------------------------

EXCLUDED_DIRS = {".venv", "venv", ".cache", "__pycache__", "node_modules", ".git", "artifacts", "catalogs", "runs",
                 ".hypothesis", ".pytest_cache", ".ruff_cache"}


def source_files() -> list[Path]:
    return sorted(path for path in REPO_ROOT.rglob("*.py")
                  if not EXCLUDED_DIRS & set(path.relative_to(REPO_ROOT).parts))


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value == value for k in call.keywords)


FORBIDDEN_CALLS = {"eval", "exec", "os.system", "os.popen", "pickle.load", "pickle.loads", "cPickle.load",
                   "cPickle.loads", "dill.load", "dill.loads", "joblib.load", "marshal.load", "marshal.loads",
                   "shelve.open", "pd.read_pickle", "pandas.read_pickle", "jsonpickle.decode"}


def test_no_eval_pickle_or_remote_code_in_the_source_tree():
    assert len(source_files()) > 30
    offenders = []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        where = path.relative_to(REPO_ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                               and node.module else [])
                if {"pickle", "cPickle", "dill", "marshal", "shelve", "jsonpickle"} & {n.split(".")[0] for n in names}:
                    offenders.append(f"{where}:{node.lineno}: imports a pickle-like module")
            if not isinstance(node, ast.Call):
                continue
            name = dotted(node.func)
            if name in FORBIDDEN_CALLS:
                offenders.append(f"{where}:{node.lineno}: {name}()")
            if keyword_is(node, "trust_remote_code", True):
                offenders.append(f"{where}:{node.lineno}: trust_remote_code=True")
            if keyword_is(node, "shell", True):
                offenders.append(f"{where}:{node.lineno}: shell=True")
            if keyword_is(node, "allow_pickle", True):
                offenders.append(f"{where}:{node.lineno}: allow_pickle=True")
            if keyword_is(node, "weights_only", False):
                offenders.append(f"{where}:{node.lineno}: weights_only=False")
            if name.endswith("torch.load") and not keyword_is(node, "weights_only", True):
                offenders.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
            if name in ("yaml.load", "yaml.load_all") and not any(k.arg == "Loader" and "Safe" in dotted(k.value)
                                                                   for k in node.keywords):
                offenders.append(f"{where}:{node.lineno}: yaml.load without SafeLoader")
        if re.search(r"trust_remote_code\s*=\s*True", text) and path.name != Path(__file__).name:
            offenders.append(f"{where}: mentions trust_remote_code=True")
    assert not offenders, offenders


def test_annotations_are_parsed_with_literal_eval_only(tmp_path):
    """ingest's only evaluator is ast.literal_eval: a cell holding code is a parse error, never executed."""
    from recommender.ingest import ingest_sources, parse_spotamood_annotation
    from tests.test_ingest import spotamood_row, write_csv

    tree = ast.parse((REPO_ROOT / "recommender" / "ingest.py").read_text())
    calls = {dotted(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "ast.literal_eval" in calls and not calls & {"eval", "exec", "compile", "__import__"}
    marker = tmp_path / "executed"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"[(open('{marker}', 'w').write('x'), [['annotation']])]",
        "[('fragment', [['annotation']])] + [__import__('os').getcwd()]",
        "(lambda: 1)()", "[" * 5000 + "]" * 5000, "{'a': 1}", "1e9999", "b'bytes'",
    ]
    rows = [spotamood_row(f"Artist {i}", f"Title {i}", f"Title {i} Lyrics\nfirst line {i}\nsecond line {i}",
                          annotation=payload) for i, payload in enumerate(payloads)]
    catalog = ingest_sources([write_csv(tmp_path / "songs.csv", rows)])
    assert not marker.exists()
    assert catalog.report["annotation_parse_errors"] == len(payloads) and len(catalog.songs) == len(payloads)
    for payload in payloads[:3]:
        with pytest.raises(ValueError):
            parse_spotamood_annotation(payload)
    assert not marker.exists()


def test_clip_weights_are_loaded_without_unpickling_code():
    """open_clip.load_checkpoint (our only weights loader for .bin/.pth) defaults to torch.load(weights_only=True)."""
    import inspect

    import open_clip

    assert inspect.signature(open_clip.load_checkpoint).parameters["weights_only"].default is True
    source = (REPO_ROOT / "recommender" / "clip.py").read_text()
    assert "open_clip.load_checkpoint(model, str(found.weights), strict=True)" in source
    assert "weights_only" not in source  # never overridden


@pytest.fixture(autouse=True, scope="module")
def _no_stray_symlinks():
    """Remove the symlinks these tests plant in gradio's upload folder."""
    yield
    from gradio.utils import get_upload_folder

    for name in ("security-test", "security-unit"):
        shutil.rmtree(Path(get_upload_folder()) / name, ignore_errors=True)
