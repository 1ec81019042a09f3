"""Image → songs end to end: build CLIP line embeddings, search with skimage's sample pictures, calibrate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from recommender.__main__ import main
from recommender.embeddings import read_manifest
from recommender.encoders import load_encoder
from recommender.errors import ModelUnavailableError, QueryError
from recommender.service import Recommender
from tests.conftest import REPO_ROOT
from tests.tiny_clip import build_tiny_clip

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def sample_pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(skimage_data, name)()).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def clip_catalog(tmp_path_factory):
    from tests.conftest import make_catalog

    catalog = make_catalog([
        {"title": f"Song {i}", "artist": "Band", "valence": i / 10,
         "lines": [f"line {i} {word}" for word in ("coffee", "cat", "space", "stars", "rain")] +
                  ["a very long line " * 40]}  # > 77 CLIP tokens: truncated, never dropped
        for i in range(10)
    ])
    return catalog.save(tmp_path_factory.mktemp("catalog") / "cat")


def test_build_with_clip_counts_truncated_lines(tiny_clip_dir, clip_catalog, tmp_path, capsys):
    out = tmp_path / "clip-emb"
    assert main(["build", "--catalog", str(clip_catalog), "--model", f"clip:{tiny_clip_dir}", "--out", str(out),
                 "--quiet"]) == 0
    manifest = read_manifest(out)
    assert manifest["model_kind"] == "clip"
    assert manifest["dimension"] == 32
    assert manifest["build_report"]["clip_truncated_lines"] == 1
    assert manifest["count"] == 51  # 50 distinct short lines + the one long line


def test_text_and_clip_sets_live_side_by_side(tiny_clip_dir, clip_catalog, packaged_encoder):
    text = Recommender.open(catalog_dir=clip_catalog, model="baseline")
    clip = Recommender.open(catalog_dir=clip_catalog, model=str(tiny_clip_dir))
    assert text.index.vectors.shape[1] == 384 and clip.index.vectors.shape[1] == 32
    assert len({path.name for path in (clip_catalog / "embeddings").iterdir()}) == 2


def test_image_search_end_to_end_with_valence(tiny_clip_dir, clip_catalog, sample_pngs):
    recommender = Recommender.open(catalog_dir=clip_catalog, model=str(tiny_clip_dir))
    picture = sample_pngs / "coffee.png"
    result = recommender.search_image(str(picture), valence_min=0.2, valence_max=0.6, top_n=3)
    assert result["query"] == "image:coffee.png"
    assert 1 <= len(result["results"]) <= 3
    assert all(0.2 <= song["valence"] <= 0.6 for song in result["results"])
    # The scores are the real image–text cosines of the index.
    query = recommender.encoder.encode_images([picture])[0]
    best = float(np.max(recommender.index.row_scores(query).numpy()[
        np.isin(recommender.index.row_song, np.flatnonzero((recommender.catalog.songs["valence"] >= 0.2)
                                                           & (recommender.catalog.songs["valence"] <= 0.6)))]))
    every_song = recommender.search_image(str(picture), valence_min=0.2, valence_max=0.6, top_n=50)
    shown = [line["score"] for song in every_song["results"] for line in song["lines"]]
    assert max(shown) == pytest.approx(best, abs=1e-5)


def test_cli_image_search_json(tiny_clip_dir, clip_catalog, sample_pngs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "recommender", "search", "--image", str(sample_pngs / "astronaut.png"),
                           "--model", str(tiny_clip_dir), "--catalog", str(clip_catalog), "--json", "--top", "2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert set(payload) == {"query", "model", "ranking", "results"} and len(payload["results"]) == 2


def test_text_model_refuses_images_and_bad_images_are_clear(tiny_clip_dir, clip_catalog, tmp_path, packaged_encoder):
    text = Recommender.open(catalog_dir=clip_catalog, model="baseline")
    with pytest.raises(QueryError, match="needs a CLIP model"):
        text.search_image(b"whatever")
    clip = Recommender.open(catalog_dir=clip_catalog, model=str(tiny_clip_dir))
    (tmp_path / "fake.png").write_text("<html>not an image</html>")
    with pytest.raises(QueryError):
        clip.search_image(str(tmp_path / "fake.png"))


def test_no_clip_weights_is_a_clear_error_and_text_still_works(clip_catalog, packaged_encoder, capsys):
    with pytest.raises(ModelUnavailableError, match="no CLIP weights"):
        load_encoder("clip")
    assert main(["search", "--image", __file__, "--model", "clip", "--catalog", str(clip_catalog)]) == 2
    assert "no CLIP weights" in capsys.readouterr().err
    assert Recommender.open(catalog_dir=clip_catalog, model="baseline").search_text("rain")["results"]


def test_calibrate_stores_a_threshold_that_ranking_uses(tiny_clip_dir, clip_catalog, sample_pngs, capsys,
                                                        packaged_encoder):
    recommender = Recommender.open(catalog_dir=clip_catalog, model=str(tiny_clip_dir))
    embeddings_dir = recommender.embeddings_label
    assert main(["calibrate", "--embeddings", embeddings_dir, "--images", str(sample_pngs), "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["query_kind"] == "pictures" and outcome["queries"] == 3
    assert 0.0 <= outcome["percentile"] <= 1.0
    manifest = read_manifest(embeddings_dir)
    assert manifest["threshold"] == pytest.approx(outcome["threshold"])
    reopened = Recommender.open(catalog_dir=clip_catalog, model=str(tiny_clip_dir))
    assert reopened.threshold == pytest.approx(outcome["threshold"])
    # The baseline keeps 0.6.
    baseline = Recommender.open(catalog_dir=clip_catalog, model="baseline")
    assert main(["calibrate", "--embeddings", baseline.embeddings_label, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.6
