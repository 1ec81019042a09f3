"""Recommender facade on the embedded default catalog with the real packaged model."""

from __future__ import annotations

import math

import pytest

from recommender.errors import QueryError
from recommender.service import Recommender, check_query
from space_config import SETTINGS


def recompute(lines, threshold=0.6):
    return sum(line["score"] if line["score"] >= threshold else line["score"] * 0.5 for line in lines)


def test_default_catalog_answers_a_mood_query_with_matching_lines(default_recommender):
    result = default_recommender.search_text("dancing in the summer rain", top_n=5)
    assert result["query"] == "dancing in the summer rain"
    assert result["model"] == "baseline"
    assert 1 <= len(result["results"]) <= 5
    top = result["results"][0]
    assert "rain" in " ".join(line["text"].lower() for line in top["lines"])
    for rank, song in enumerate(result["results"], 1):
        assert song["rank"] == rank
        assert song["score"] == pytest.approx(recompute(song["lines"]), abs=1e-4)
        assert [line["score"] for line in song["lines"]] == sorted((line["score"] for line in song["lines"]),
                                                                   reverse=True)
    scores = [song["score"] for song in result["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sum(len(song["lines"]) for song in result["results"]) <= 100


def test_candidate_lines_are_the_global_top_100(default_recommender):
    query = "leaving my small town for the city"
    result = default_recommender.search_text(query, top_n=50)
    lines = [line for song in result["results"] for line in song["lines"]]
    all_rows = sorted(default_recommender.index.row_scores(default_recommender.encoder.encode([query])[0]).tolist(),
                      reverse=True)
    assert len(lines) <= 100
    assert max(line["score"] for line in lines) == pytest.approx(all_rows[0], abs=1e-5)
    assert min(line["score"] for line in lines) >= all_rows[99] - 1e-5


def test_valence_range_keeps_only_songs_inside_it(default_recommender):
    result = default_recommender.search_text("crying alone at a funeral", valence_min=0.7, valence_max=1.0)
    assert result["results"], "a narrow range still returns its best songs"
    assert all(0.7 <= song["valence"] <= 1.0 for song in result["results"])
    sad = default_recommender.search_text("crying alone at a funeral", valence_min=0.0, valence_max=0.3)
    assert all(song["valence"] <= 0.3 for song in sad["results"])
    assert sad["results"][0]["song_id"] != result["results"][0]["song_id"]


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "x" * 5000, None, 42])
def test_unusable_queries_get_a_clear_error(default_recommender, query):
    with pytest.raises(QueryError):
        default_recommender.search_text(query)


@pytest.mark.parametrize("top_n", [0, -1, 51, 2.5, math.nan, "ten"])
def test_bad_result_counts_are_refused(default_recommender, top_n):
    with pytest.raises(QueryError, match="top_n"):
        default_recommender.search_text("rain", top_n=top_n)


def test_queries_are_normalized_not_mangled():
    assert check_query("  driving\x00 at   night \n") == "driving at night"
    assert check_query("شمس 🌞 <script>alert(1)</script>") == "شمس 🌞 <script>alert(1)</script>"


def test_status_names_catalog_model_and_embeddings(default_recommender):
    status = default_recommender.status()
    assert "90 songs" in status and "baseline" in status and "embeddings" in status


def test_stale_cached_embeddings_are_rebuilt_but_explicit_ones_refused(tmp_path, small_catalog, packaged_encoder):
    small_catalog.save(tmp_path / "cat")
    first = Recommender.open(catalog_dir=tmp_path / "cat", model="baseline")
    assert first.search_text("headlights on the highway")["results"][0]["title"] == "Night Drive"
    small_catalog.lines.loc[0, "text"] = "a brand new first line"
    small_catalog.save(tmp_path / "cat2")
    # Move the old embeddings next to the new catalog: stale for it.
    (tmp_path / "cat" / "embeddings").rename(tmp_path / "cat2" / "embeddings")
    rebuilt = Recommender.open(catalog_dir=tmp_path / "cat2", model="baseline")
    assert "a brand new first line" in rebuilt.index.texts
    from recommender.errors import EmbeddingsMismatchError

    small_catalog.lines.loc[0, "text"] = "yet another line"
    small_catalog.save(tmp_path / "cat3")
    with pytest.raises(EmbeddingsMismatchError, match="built for catalog"):
        Recommender.open(catalog_dir=tmp_path / "cat3", embeddings_dir=next((tmp_path / "cat2" / "embeddings")
                                                                            .iterdir()), model="baseline")


@pytest.mark.parametrize("ranking", ["seed", "song-mean", "windows", "hybrid"])
def test_each_ranking_answers_with_its_name_and_respects_the_valence_range(default_recommender, ranking):
    result = default_recommender.search_text("crying alone at a funeral", valence_min=0.0, valence_max=0.4, top_n=5,
                                             ranking=ranking)
    assert result["ranking"] == ranking and len(result["results"]) == 5
    assert all(song["valence"] is not None and song["valence"] <= 0.4 for song in result["results"])
    assert [song["score"] for song in result["results"]] == sorted((s["score"] for s in result["results"]),
                                                                   reverse=True)
    catalog = default_recommender.catalog
    for song in result["results"]:
        texts = set(catalog.lines.loc[catalog.lines["song_id"] == song["song_id"], "text"])
        assert song["lines"] and all(line["text"] in texts for line in song["lines"])  # the song's own lines
        assert [line["score"] for line in song["lines"]] == sorted((line["score"] for line in song["lines"]),
                                                                   reverse=True)
        if ranking != "seed":
            assert len(song["lines"]) <= SETTINGS.shown_lines_per_song


def test_song_mean_scores_are_cosines_with_the_song_vector(default_recommender):
    import numpy as np

    query = "dancing in the summer rain"
    result = default_recommender.search_text(query, top_n=5, ranking="song-mean")
    vector = default_recommender.encoder.encode_queries([query])[0]
    positions = {song_id: i for i, song_id in enumerate(default_recommender.catalog.songs["song_id"])}
    units = default_recommender.song_units()
    for song in result["results"]:
        rows = units.song_rows[units.song_row_start[positions[song["song_id"]]]:
                               units.song_row_start[positions[song["song_id"]] + 1]]
        mean = default_recommender._row_vectors(rows).numpy().mean(axis=0)
        assert song["score"] == pytest.approx(float(mean @ vector / np.linalg.norm(mean)), abs=1e-4)


def test_default_and_unknown_rankings(default_recommender):
    assert default_recommender.search_text("rain", top_n=1)["ranking"] == SETTINGS.default_ranking
    assert default_recommender.search_text("rain", top_n=1, ranking=" Seed ")["ranking"] == "seed"
    for bad in ("best", "", "seed,hybrid"):
        with pytest.raises(QueryError, match="unknown ranking"):
            default_recommender.search_text("rain", ranking=bad)
