"""Gradio Space: find songs by what their lyrics mean. Widgets only — all search logic lives in ``recommender``.

Public API (``gradio_client``), every result in the CLI's ``--json`` shape:

* ``/search_text(query, model, valence_min, valence_max, top_n, ranking)``
* ``/search_image(image, model, valence_min, valence_max, top_n, ranking)`` — ``image`` is a ``handle_file(...)``
  upload
* ``/compare(query, valence_min, valence_max, top_n, ranking)`` — baseline and finetuned side by side, same ranking
* ``/models()`` — ``[{"name", "kind", "source", "available", "reason"}]``

``ranking`` is last and optional (default ``SETTINGS.default_ranking``): one of ``recommender.ranking.RANKING_NAMES``,
``"seed"`` being the original study's rule. Each result says which ranking produced it. A raw HTTP call may leave
out trailing parameters that have a default (see ``Blocks``).

Every UI-only event is private, so it does not clutter the API.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
import time
from pathlib import Path

import gradio as gr
from gradio.components.api_component import Api
from gradio.data_classes import FileData

from recommender.errors import ModelUnavailableError, QueryError, RecommenderError
from recommender.projection import get_song_map
from recommender.ranking import RANKING_LABELS, RANKING_NAMES, SEED_RANKING
from recommender.registry import ModelEntry, ModelRegistry, default_registry
from recommender.service import check_query
from space_config import SETTINGS

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
logger = logging.getLogger("app")

EXAMPLES = [
    "driving alone at night after a breakup",
    "dancing in the summer rain",
    "missing home while living far away",
    "a quiet morning coffee before work",
    "standing up for what is right",
]
RESPONSIBLE_USE = (
    "Song suggestions are not a tool for self-harm content. If you are struggling, please reach out to someone "
    "you trust or a local crisis line — in many countries you can call or text **988** (US) or find a helpline "
    "at [findahelpline.com](https://findahelpline.com)."
)
TABLE_HEADERS = ["rank", "title", "artist", "song score", "valence"]
CLIP_MODEL = next((spec.name for spec in SETTINGS.models if spec.kind == "clip"), "clip")
MAX_FILE_SIZE = "10mb"
CONCURRENCY_LIMIT = 2  # searches running at once; the rest wait in the queue
QUEUE_MAX_SIZE = 16  # beyond this the queue answers "busy" instead of piling up work
LOAD_POLL_S = 0.5
LOAD_MAX_S = 900
# The ranking dropdown: (label shown, name passed to the library); the seed rule is named as the study's.
RANKING_CHOICES = [(f"{name} — {'original ' if name == SEED_RANKING else ''}{RANKING_LABELS[name]}", name)
                   for name in RANKING_NAMES]
PROGRESS = gr.Progress()  # the default that makes gradio pass each event its own progress tracker

REGISTRY: ModelRegistry = default_registry()


# --- Background loading ----------------------------------------------------------------------------------------


class Warmup:
    """Loads the baseline Recommender and its catalog map in a daemon thread, then probes every other model."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.stage = "waiting to start"
        self.error: str | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.started_at is None:
                self.started_at = time.perf_counter()
                threading.Thread(target=self._run, name="warmup", daemon=True).start()

    def _run(self) -> None:
        try:
            self.stage = f"loading the {SETTINGS.baseline_model} model and the embedded catalog (the first start " \
                         "also builds the catalog's embeddings)"
            recommender = REGISTRY.open(SETTINGS.baseline_model)
            self.stage = "fitting the catalog map"
            get_song_map(recommender)
            self.stage = "ready"
        except Exception as error:  # shown on the page; the app stays up for the other models
            logger.exception("warm-up failed")
            self.error = str(error) if isinstance(error, RecommenderError) else f"{type(error).__name__}: {error}"
        finally:
            self.done.set()
            REGISTRY.start_probing()

    @property
    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.perf_counter() - self.started_at


WARMUP = Warmup()


def ensure_loading() -> None:
    """Start loading the default model in the background (idempotent)."""
    WARMUP.start()


# --- Library calls -----------------------------------------------------------------------------------------------


def user_errors(fn):
    """Turn library errors (bad query, unavailable model…) into a ``gr.Error`` carrying the library's message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecommenderError as error:
            raise gr.Error(str(error)) from error

    return wrapper


def _open(model: str):
    """The entry and loaded Recommender for a listed model name (ModelUnavailableError when it cannot load)."""
    entry = REGISTRY.entry(model)
    return entry, REGISTRY.open(entry.name)


def run_text_search(query: str, model: str, valence_min: float, valence_max: float, top_n: int,
                    ranking: str | None = None) -> dict:
    entry, recommender = _open(model)
    result = recommender.search_text(query, valence_min=valence_min, valence_max=valence_max, top_n=top_n,
                                     ranking=ranking)
    return {**result, "model": entry.name}


def run_image_search(image_path: str, model: str, valence_min: float, valence_max: float, top_n: int,
                     ranking: str | None = None) -> dict:
    entry, recommender = _open(model)
    result = recommender.search_image(image_path, valence_min=valence_min, valence_max=valence_max, top_n=top_n,
                                      ranking=ranking)
    return {**result, "model": entry.name}


def run_compare(query: str, valence_min: float, valence_max: float, top_n: int, ranking: str | None = None) -> dict:
    baseline = run_text_search(query, SETTINGS.baseline_model, valence_min, valence_max, top_n, ranking)
    try:
        finetuned = run_text_search(query, SETTINGS.finetuned_model, valence_min, valence_max, top_n, ranking)
    except QueryError:
        raise
    except RecommenderError as error:
        finetuned = {"error": str(error)}
    return {"query": baseline["query"], "baseline": baseline, "finetuned": finetuned}


def upload_path(image) -> str:
    """The local path of an uploaded file, refusing anything outside gradio's upload folder.

    gradio checks file objects that carry ``meta``; this also covers a bare ``{"path": ...}`` or string, so a caller
    can never make the server read an arbitrary file.
    """
    from gradio.utils import get_upload_folder

    if isinstance(image, FileData):
        path = image.path
    elif isinstance(image, dict):
        path = image.get("path")
    else:
        path = image
    if not path or not isinstance(path, str):
        raise QueryError("no image given: upload a picture (gradio_client: handle_file('photo.jpg'))")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(get_upload_folder()).resolve()) or not resolved.is_file():
        raise QueryError("the image must be uploaded with the request (gradio_client: handle_file('photo.jpg'))")
    return str(resolved)


# --- Public API ----------------------------------------------------------------------------------------------------


@user_errors
def search_text(query: str, model: str = SETTINGS.baseline_model, valence_min: float = 0.0,
                valence_max: float = 1.0, top_n: int = SETTINGS.default_top_n,
                ranking: str = SETTINGS.default_ranking) -> dict:
    """Songs whose lyric lines mean what the query says: {"query", "model", "ranking", "results": [...]} (the CLI's
    --json). ranking: seed (the original study's rule), song-mean, windows or hybrid."""
    return run_text_search(query, model, valence_min, valence_max, top_n, ranking)


@user_errors
def search_image(image: FileData, model: str = CLIP_MODEL, valence_min: float = 0.0, valence_max: float = 1.0,
                 top_n: int = SETTINGS.default_top_n, ranking: str = SETTINGS.default_ranking) -> dict:
    """Songs whose lyric lines match a picture (a CLIP model): same shape as search_text; query is "image:<name>"."""
    return run_image_search(upload_path(image), model, valence_min, valence_max, top_n, ranking)


@user_errors
def compare(query: str, valence_min: float = 0.0, valence_max: float = 1.0,
            top_n: int = SETTINGS.default_top_n, ranking: str = SETTINGS.default_ranking) -> dict:
    """The same query and ranking with the baseline and the fine-tuned model: {"query", "baseline", "finetuned"}.

    "finetuned" is {"error": "..."} when that model cannot be loaded here.
    """
    return run_compare(query, valence_min, valence_max, top_n, ranking)


def models() -> list[dict]:
    """Every model on offer: [{"name", "kind", "source", "available", "reason"}] (waits for the startup probe)."""
    ensure_loading()
    REGISTRY.start_probing()
    return [entry.public() for entry in REGISTRY.list_models(wait=120)]


# --- Presentation ------------------------------------------------------------------------------------------------


def results_table(result: dict) -> list[list]:
    return [[song["rank"], song["title"], song["artist"], round(song["score"], 3),
             "–" if song["valence"] is None else round(song["valence"], 2)] for song in result["results"]]


def matched_lines_html(result: dict) -> str:
    """Each song's matched lines with their cosine; the strongest line of each song is highlighted."""
    if not result["results"]:
        return "<p>No songs match in this valence range. Try widening it.</p>"
    blocks = []
    for song in result["results"]:
        lines = "".join(
            f"<li class='{'best' if i == 0 else ''}'><span class='score'>{line['score']:.2f}</span> "
            f"{html.escape(line['text'])}</li>" for i, line in enumerate(song["lines"]))
        blocks.append(f"<div class='song'><b>{song['rank']}. {html.escape(song['title'])}</b> — "
                      f"{html.escape(song['artist'])} <span class='score'>score {song['score']:.3f}</span>"
                      f"<ul>{lines}</ul></div>")
    return "".join(blocks)


def about_the_models() -> str:
    """Our study: the latest evaluation report written by training.evaluate (table with CIs)."""
    report = SETTINGS.evaluation_report_dir / "report.md"
    if not report.is_file():
        return "No evaluation report yet: run `python -m training.evaluate ... --out training/reports/latest`."
    return report.read_text()


def message_html(text: str) -> str:
    return f"<p class='notice'>{html.escape(text)}</p>"


def status_markdown(recommender, extra: str = "") -> str:
    return f"**Loaded:** {recommender.status()}" + (f"  \n{extra}" if extra else "")


def model_list_markdown(entries: list[ModelEntry]) -> str:
    lines = []
    for entry in entries:
        if entry.available is None:
            state = "checking…"
        elif entry.available:
            state = "available" + (f" — {entry.reason}" if entry.reason else "")
        else:
            state = f"unavailable: {entry.reason}"
        lines.append(f"- **{entry.name}** ({entry.kind}, {entry.source}) — {state}")
    return "\n".join(lines)


def model_choices(entries: list[ModelEntry]) -> list[str]:
    """Dropdown choices: every model that loads here (or is still being checked)."""
    return [entry.name for entry in entries if entry.available is not False]


def map_figure(recommender, result: dict | None = None, query_vector=None, query_label: str = "your query"):
    """The catalog map: songs coloured by valence, this search's songs ringed and named, the query as a star."""
    import numpy as np
    from matplotlib.figure import Figure

    song_map = get_song_map(recommender)
    xy, valence = song_map.xy, song_map.valence
    figure = Figure(figsize=(7.5, 5.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    known = ~np.isnan(valence)
    points = axes.scatter(xy[known, 0], xy[known, 1], c=valence[known], cmap="coolwarm", vmin=0, vmax=1, s=36,
                          alpha=0.85, linewidths=0)
    if (~known).any():
        axes.scatter(xy[~known, 0], xy[~known, 1], c="#aaaaaa", s=36, alpha=0.7, linewidths=0,
                     label="valence unknown")
    figure.colorbar(points, ax=axes, label="valence (0 sad ↔ 1 happy)")
    if result and result.get("results"):
        position = {song_id: i for i, song_id in enumerate(recommender.catalog.songs["song_id"])}
        for song in result["results"][:10]:
            i = position.get(song["song_id"])
            if i is None:
                continue
            axes.scatter(xy[i, 0], xy[i, 1], s=110, facecolors="none", edgecolors="black", linewidths=1.2)
            axes.annotate(f"{song['rank']}. {song['title']}", xy[i], xytext=(5, 4), textcoords="offset points",
                          fontsize=8)
    if query_vector is not None:
        qx, qy = song_map.project(query_vector)
        axes.scatter([qx], [qy], marker="*", s=320, c="gold", edgecolors="black", linewidths=1.0, zorder=5,
                     label=query_label)
    if query_vector is not None or (~known).any():
        axes.legend(loc="best", fontsize=8)
    axes.set_title(f"Catalog map — {len(xy)} songs, {recommender.encoder.name} embeddings (PCA)", fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    return figure


# --- UI event handlers (private: not part of the API) --------------------------------------------------------------


def _progress_note(model: str, progress) -> None:
    if not REGISTRY.is_open(model):
        progress(0.05, desc=f"loading model {model} (its first use builds the catalog's embeddings)…")


@user_errors
def on_search(query: str, model: str, valence_min: float, valence_max: float, top_n: float,
              ranking: str | None = None, progress=PROGRESS):
    """Text tab: table, matched lines, status line, catalog map."""
    _progress_note(model, progress)
    result = run_text_search(query, model, valence_min, valence_max, int(top_n), ranking)
    recommender = REGISTRY.open(model)
    vector = recommender.encoder.encode_queries([check_query(query)])[0]
    return (results_table(result), matched_lines_html(result), status_markdown(recommender),
            map_figure(recommender, result, vector, "your query"))


def clip_model_for(selected: str) -> tuple[str | None, str]:
    """The model an image search uses: the selection if it is a CLIP model, else the first CLIP model that loads.

    Returns ``(model or None, note)``; the note says why another model is used, or why none can be.
    """
    entry = REGISTRY.entry(selected)
    if entry.kind == "clip":
        return entry.name, ""
    reasons = []
    for candidate in REGISTRY.list_models():
        if candidate.kind != "clip":
            continue
        candidate = REGISTRY.probe(candidate.name)
        if candidate.available:
            return candidate.name, (f"Image search uses **{candidate.name}**: the selected model {selected} "
                                    "is a text model.")
        reasons.append(f"{candidate.name}: {candidate.reason}")
    return None, "Image search is unavailable here — " + ("; ".join(reasons) or "no CLIP model is configured")


def on_image_search(image: str | None, model: str, valence_min: float, valence_max: float, top_n: float,
                    ranking: str | None = None, progress=PROGRESS):
    """Image tab: like the text tab; when no CLIP weights load here, says so instead of failing."""
    if not image:
        raise gr.Error("Upload a picture first.")
    try:
        clip_model, note = clip_model_for(model)
        if clip_model is None:
            return [], message_html(note), gr.skip(), gr.skip(), note
        _progress_note(clip_model, progress)
        result = run_image_search(image, clip_model, valence_min, valence_max, int(top_n), ranking)
        recommender = REGISTRY.open(clip_model)
        vector = recommender.encoder.encode_images([image])[0]
    except ModelUnavailableError as error:
        return [], message_html(str(error)), gr.skip(), gr.skip(), f"Image search is unavailable here — {error}"
    except RecommenderError as error:
        raise gr.Error(str(error)) from error
    return (results_table(result), matched_lines_html(result), status_markdown(recommender, note),
            map_figure(recommender, result, vector, "your picture"), note or image_note_now())


def _compare_column(name: str, result: dict) -> tuple[str, list[list]]:
    if "error" in result:
        return f"### {name}\n⚠️ {name} — unavailable: {result['error']}", []
    recommender = REGISTRY.open(name)
    return f"### {name}\n<small>{html.escape(recommender.encoder.describe())}</small>", results_table(result)


@user_errors
def on_compare(query: str, valence_min: float, valence_max: float, top_n: float, ranking: str | None = None,
               progress=PROGRESS):
    """Compare tab: the same query and ranking with baseline and finetuned, side by side."""
    _progress_note(SETTINGS.finetuned_model, progress)
    result = run_compare(query, valence_min, valence_max, int(top_n), ranking)
    base_title, base_rows = _compare_column(SETTINGS.baseline_model, result["baseline"])
    tuned_title, tuned_rows = _compare_column(SETTINGS.finetuned_model, result["finetuned"])
    return base_title, base_rows, tuned_title, tuned_rows


def image_note_now() -> str:
    entries = [entry for entry in REGISTRY.list_models() if entry.kind == "clip"]
    if any(entry.available for entry in entries):
        return "Upload a picture; its CLIP embedding is matched against the lyric lines."
    if entries and all(entry.available is False for entry in entries):
        return "Image search is unavailable here — " + "; ".join(f"{e.name}: {e.reason}" for e in entries)
    return "Checking whether CLIP weights are available…"


def on_page_load():
    """Status line, model list, dropdown, map and image note — updated while the models load (a generator)."""
    ensure_loading()
    started = time.perf_counter()
    last_models = None
    announced_ready = False
    while time.perf_counter() - started < LOAD_MAX_S:
        entries = REGISTRY.list_models()
        models_md = model_list_markdown(entries)
        models_changed = models_md != last_models
        last_models = models_md
        if not WARMUP.done.is_set():
            yield (f"⏳ Loading: {WARMUP.stage}… ({WARMUP.elapsed:.0f} s)", models_md if models_changed else gr.skip(),
                   gr.skip(), gr.skip(), gr.skip())
        elif not announced_ready:
            announced_ready = True
            if WARMUP.error:
                status = f"⚠️ The default model could not be loaded: {WARMUP.error}"
                plot = gr.skip()
            else:
                recommender = REGISTRY.open(SETTINGS.baseline_model)
                status = status_markdown(recommender)
                plot = map_figure(recommender)
            yield status, models_md, gr.update(choices=model_choices(entries)), plot, image_note_now()
        elif models_changed:
            yield gr.skip(), models_md, gr.update(choices=model_choices(entries)), gr.skip(), image_note_now()
        if announced_ready and REGISTRY.probing_done:
            entries = REGISTRY.list_models()
            yield gr.skip(), model_list_markdown(entries), gr.update(choices=model_choices(entries)), gr.skip(), \
                image_note_now()
            return
        time.sleep(LOAD_POLL_S)


# --- Layout --------------------------------------------------------------------------------------------------------


class Blocks(gr.Blocks):
    """gr.Blocks whose ``gr.api`` endpoints accept calls that leave out trailing parameters with a default.

    gradio_client fills those in itself; a raw HTTP call (``POST /gradio_api/call/search_text`` with
    ``{"data": [...]}``) written before ``ranking`` was added sends one value fewer, which gradio would refuse.
    """

    def validate_inputs(self, block_fn, inputs: list) -> None:
        missing = block_fn.inputs[len(inputs):]
        if missing and all(isinstance(block, Api) and block.value is not None for block in missing):
            inputs.extend(block.value for block in missing)  # in place: gradio goes on with this list
        super().validate_inputs(block_fn, inputs)


CSS = """
.song ul { margin: 0.2em 0 0.8em 0; }
.song li.best { background: #fff3b0; font-weight: 600; }
.song .score { font-family: monospace; color: #666; }
.notice { color: #a15c00; font-weight: 600; }
"""
LAUNCH_KWARGS = {"css": CSS, "max_file_size": MAX_FILE_SIZE}

with Blocks(title="Lyrics meaning search") as demo:
    gr.Markdown("# 🎵 Find songs by what their lyrics mean\nDescribe a mood or a scene — or show a picture; we match "
                "it against every lyric line and rank the songs whose lines mean the same thing.")
    status_line = gr.Markdown("⏳ Loading…", elem_id="status-line")
    with gr.Row():
        with gr.Column(scale=3), gr.Tabs():
            with gr.Tab("Text", id="text-tab"):
                query_box = gr.Textbox(label="Describe a mood or a scene", placeholder=EXAMPLES[0], lines=1,
                                       max_length=SETTINGS.max_query_chars, elem_id="query-box")
                gr.Examples(EXAMPLES, inputs=query_box, api_visibility="private")
                search_button = gr.Button("Search", variant="primary", elem_id="search-button")
            with gr.Tab("Image", id="image-tab"):
                image_box = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Picture",
                                     height=240, elem_id="image-box")
                image_note = gr.Markdown("Checking whether CLIP weights are available…")
                image_button = gr.Button("Search with this picture", variant="primary", elem_id="image-button")
        with gr.Column(scale=2):
            model_box = gr.Dropdown(choices=REGISTRY.names(), value=SETTINGS.baseline_model, label="Model",
                                    elem_id="model-box")
            valence_min_box = gr.Slider(0, 1, value=0, step=0.05, label="Valence from (0 sad ↔ 1 happy)")
            valence_max_box = gr.Slider(0, 1, value=1, step=0.05, label="Valence to (0 sad ↔ 1 happy)")
            top_n_box = gr.Slider(1, SETTINGS.max_top_n, value=SETTINGS.default_top_n, step=1, label="Songs")
            ranking_box = gr.Dropdown(choices=RANKING_CHOICES, value=SETTINGS.default_ranking, label="Ranking",
                                      info="how matching lines become a song's score (text, image and compare)",
                                      elem_id="ranking-box")
            with gr.Accordion("Models", open=False):
                models_view = gr.Markdown(model_list_markdown(REGISTRY.list_models()))
    with gr.Tabs():
        with gr.Tab("Results", id="results-tab"):
            table = gr.Dataframe(headers=TABLE_HEADERS, label="Songs", interactive=False, elem_id="results-table")
            lines_view = gr.HTML(label="Matched lines", elem_id="matched-lines")
        with gr.Tab("Compare baseline ↔ finetuned", id="compare-tab"):
            compare_button = gr.Button("Compare for the text query", elem_id="compare-button")
            with gr.Row():
                with gr.Column():
                    base_title = gr.Markdown(f"### {SETTINGS.baseline_model}")
                    base_table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False)
                with gr.Column():
                    tuned_title = gr.Markdown(f"### {SETTINGS.finetuned_model}")
                    tuned_table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False)
        with gr.Tab("Catalog map", id="map-tab"):
            map_plot = gr.Plot(label="Songs by lyric meaning (2-D projection), coloured by valence",
                               elem_id="catalog-map")
        with gr.Tab("About the models", id="about-tab"):
            gr.Markdown(about_the_models())
            if (SETTINGS.evaluation_report_dir / "chart.png").is_file():
                gr.Image(str(SETTINGS.evaluation_report_dir / "chart.png"), label="Held-out evaluation",
                         show_label=True, interactive=False)
    gr.Markdown(RESPONSIBLE_USE)

    options = [valence_min_box, valence_max_box, top_n_box, ranking_box]
    text_inputs = [query_box, model_box, *options]
    text_outputs = [table, lines_view, status_line, map_plot]
    search_button.click(on_search, text_inputs, text_outputs, api_visibility="private")
    query_box.submit(on_search, text_inputs, text_outputs, api_visibility="private")
    image_button.click(on_image_search, [image_box, model_box, *options], [*text_outputs, image_note],
                       api_visibility="private")
    compare_button.click(on_compare, [query_box, *options], [base_title, base_table, tuned_title, tuned_table],
                         api_visibility="private")
    # The loading poller mostly sleeps: it must not take one of the search slots.
    demo.load(on_page_load, None, [status_line, models_view, model_box, map_plot, image_note],
              api_visibility="private", concurrency_limit=None, show_progress="hidden")

    gr.api(search_text, api_name="search_text")
    gr.api(search_image, api_name="search_image")
    gr.api(compare, api_name="compare")
    gr.api(models, api_name="models", concurrency_limit=None)

demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_MAX_SIZE)

if __name__ == "__main__":
    import torch

    torch.set_num_threads(SETTINGS.serve_torch_threads)
    ensure_loading()
    demo.launch(**LAUNCH_KWARGS)
