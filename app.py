"""Gradio Space: find songs by what their lyrics mean. Widgets only — all search logic lives in ``recommender``."""

from __future__ import annotations

import html
import logging
import threading

import gradio as gr

from recommender.errors import RecommenderError
from recommender.service import Recommender
from space_config import SETTINGS

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

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

_recommenders: dict[str, Recommender] = {}
_load_lock = threading.Lock()


def get_recommender(model: str) -> Recommender:
    """One loaded Recommender per model, created on first use (loading is serialized: models are large)."""
    with _load_lock:
        if model not in _recommenders:
            _recommenders[model] = Recommender.open(model=model)
        return _recommenders[model]


def search_text(query: str, model: str = SETTINGS.baseline_model, valence_min: float = 0.0, valence_max: float = 1.0,
                top_n: int = SETTINGS.default_top_n) -> dict:
    """API: songs for a sentence, as ``{"query", "model", "results": [...]}`` (the CLI's --json shape)."""
    try:
        return get_recommender(model).search_text(query, valence_min=valence_min, valence_max=valence_max,
                                                  top_n=int(top_n))
    except RecommenderError as error:
        raise gr.Error(str(error)) from error


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
                      f"{html.escape(song['artist'])}<ul>{lines}</ul></div>")
    return "".join(blocks)


def on_search(query: str, model: str, valence_min: float, valence_max: float, top_n: float):
    result = search_text(query, model, valence_min, valence_max, top_n)
    return results_table(result), matched_lines_html(result), get_recommender(model).status()


CSS = """
.song ul { margin: 0.2em 0 0.8em 0; }
.song li.best { background: #fff3b0; font-weight: 600; }
.song .score { font-family: monospace; color: #666; }
"""

with gr.Blocks(title="Lyrics meaning search") as demo:
    gr.Markdown("# 🎵 Find songs by what their lyrics mean\nDescribe a mood or a scene; we match it against every "
                "lyric line and rank the songs whose lines mean the same thing.")
    with gr.Row():
        with gr.Column(scale=3):
            query_box = gr.Textbox(label="Describe a mood or a scene", placeholder=EXAMPLES[0], lines=1,
                                   max_length=SETTINGS.max_query_chars)
            gr.Examples(EXAMPLES, inputs=query_box)
            search_button = gr.Button("Search", variant="primary")
        with gr.Column(scale=2):
            model_box = gr.Dropdown(choices=[spec.name for spec in SETTINGS.models if spec.kind == "text"],
                                    value=SETTINGS.baseline_model, label="Model")
            valence_min_box = gr.Slider(0, 1, value=0, step=0.05, label="Valence from (0 = sad)")
            valence_max_box = gr.Slider(0, 1, value=1, step=0.05, label="Valence to (1 = happy)")
            top_n_box = gr.Slider(1, SETTINGS.max_top_n, value=SETTINGS.default_top_n, step=1, label="Songs")
    table = gr.Dataframe(headers=["rank", "title", "artist", "song score", "valence"], label="Songs",
                         interactive=False)
    lines_view = gr.HTML(label="Matched lines")
    status_line = gr.Markdown("Models load on the first search.")
    gr.Markdown(RESPONSIBLE_USE)

    inputs = [query_box, model_box, valence_min_box, valence_max_box, top_n_box]
    outputs = [table, lines_view, status_line]
    search_button.click(on_search, inputs, outputs, api_visibility="private")
    query_box.submit(on_search, inputs, outputs, api_visibility="private")
    gr.api(search_text, api_name="search_text")

demo.queue(default_concurrency_limit=2, max_size=32)

if __name__ == "__main__":
    demo.launch(css=CSS)
