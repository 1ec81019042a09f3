"""The CLI contract: one JSON object with --json, readable table otherwise, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from recommender.__main__ import build_parser, main
from recommender.ranking import RANKING_NAMES
from space_config import SETTINGS
from tests.conftest import REPO_ROOT


def test_search_json_is_one_object_in_the_contract_shape(capsys, default_recommender):
    assert main(["search", "dancing in the summer rain", "--json", "--top", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"query", "model", "ranking", "results"}
    assert payload["ranking"] == SETTINGS.default_ranking
    assert len(payload["results"]) == 3
    for song in payload["results"]:
        assert set(song) == {"rank", "song_id", "title", "artist", "valence", "score", "lines"}
        assert all(set(line) == {"text", "score"} for line in song["lines"])


def test_search_table_is_readable(capsys, default_recommender):
    assert main(["search", "missing home far away", "--top", "2", "--valence", "0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "missing home far away" in out and " 1. " in out and " 2. " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "  "], "the query is empty"),
        (["search", "rain", "--valence", "0.9", "0.1"], "greater than maximum"),
        (["search", "rain", "--model", "no-such-model"], "unknown model"),
        (["search", "rain", "--catalog", "/no/such/dir"], "catalog directory not found"),
        (["search", "rain", "--top", "0"], "top_n"),
        (["search", "rain", "--ranking", "best"], "unknown ranking 'best': choose one of seed, song-mean"),
        (["search", "--image", "/etc/hostname", "--ranking", "nope"], "unknown ranking 'nope'"),
        (["ingest", "/no/such/file.csv", "--out", "/tmp/x"], "source not found"),
        (["build", "--catalog", "/no/such/dir", "--out", "/tmp/x"], "not found"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.parametrize("ranking", RANKING_NAMES)
def test_search_with_each_ranking_returns_songs(capsys, default_recommender, ranking):
    assert main(["search", "driving alone at night after a breakup", "--json", "--top", "4", "--ranking",
                 ranking]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ranking"] == ranking and len(payload["results"]) == 4
    assert [song["rank"] for song in payload["results"]] == [1, 2, 3, 4]
    assert [song["score"] for song in payload["results"]] == sorted((s["score"] for s in payload["results"]),
                                                                    reverse=True)
    assert all(song["lines"] for song in payload["results"])
    assert main(["search", "dancing in the summer rain", "--top", "2", "--ranking", ranking]) == 0
    out = capsys.readouterr().out
    assert f"ranking {ranking}" in out and " 1. " in out and " 2. " in out


def test_image_search_takes_a_ranking(capsys, tmp_path):
    """--image with each ranking, through a tiny random CLIP (offline) on a small catalog."""
    from PIL import Image

    from tests.conftest import make_catalog
    from tests.tiny_clip import build_tiny_clip

    clip_dir = build_tiny_clip(tmp_path / "tiny-clip")
    catalog = make_catalog([{"title": f"Song {i}", "artist": "Band", "valence": i / 10,
                             "lines": [f"line {i} {word}" for word in ("coffee", "cat", "space", "stars", "rain")]}
                            for i in range(8)]).save(tmp_path / "cat")
    picture = tmp_path / "p.png"
    Image.new("RGB", (32, 32), (200, 120, 40)).save(picture)
    for ranking in RANKING_NAMES:
        assert main(["search", "--image", str(picture), "--model", str(clip_dir), "--catalog", str(catalog),
                     "--json", "--top", "3", "--ranking", ranking]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["ranking"] == ranking and payload["query"] == "image:p.png" and len(payload["results"]) == 3


def test_ranking_help_names_every_ranking_and_the_study_rule():
    search = build_parser()._subparsers._group_actions[0].choices["search"]
    action = next(action for action in search._actions if action.dest == "ranking")
    assert action.default == SETTINGS.default_ranking
    assert action.metavar == "{" + ",".join(RANKING_NAMES) + "}"
    assert "seed = the original study's rule" in action.help
    assert all(f"{name} = " in action.help for name in RANKING_NAMES)


def test_ingest_build_search_round_trip(tmp_path, capsys, packaged_encoder):
    source = tmp_path / "songs.jsonl"
    songs = [
        {"title": "Harbor Lights", "artist": "Test Singer", "valence": 0.3,
         "lyrics": "[Verse]\nThe ferry leaves without me\nGulls above the empty pier\nI wave at no one",
         "annotations": [{"fragment": "The ferry leaves without me", "annotation": "Missing a chance to leave."}]},
        {"title": "Birthday Cake", "artist": "Test Singer", "valence": 0.95,
         "lyrics": "Candles on a chocolate cake\nEveryone sings out of tune\nPresents piled up to the ceiling"},
    ]
    source.write_text("\n".join(json.dumps(song) for song in songs))
    assert main(["ingest", str(source), "--out", str(tmp_path / "cat")]) == 0
    assert main(["build", "--catalog", str(tmp_path / "cat"), "--out", str(tmp_path / "emb"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["search", "a happy birthday party", "--catalog", str(tmp_path / "cat"),
                 "--embeddings", str(tmp_path / "emb"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["title"] == "Birthday Cake"


def test_python_dash_m_entry_point_prints_json_only_on_stdout():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "recommender", "search", "dancing in the summer rain", "--json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["results"][0]["score"] >= payload["results"][-1]["score"]
    assert "Traceback" not in done.stderr
