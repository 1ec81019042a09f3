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
    result = default_recommender.search_text("dancing in the summer rain", top_n=5, ranking="seed")
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
    result = default_recommender.search_text(query, top_n=50, ranking="seed")
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


@pytest.mark.parametrize("ranking", ["seed", "song-mean", "windows", "hybrid", "blend"])
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


def test_default_set_has_verses_and_song_texts_and_blend_scores_use_them(default_recommender):
    import numpy as np

    from recommender.embeddings import song_texts, verse_texts

    catalog = default_recommender.catalog
    verses = verse_texts(catalog, lines=SETTINGS.verse_lines)
    assert default_recommender.verse_song is not None and len(default_recommender.verse_song) == len(verses)
    positions = {song_id: i for i, song_id in enumerate(catalog.songs["song_id"])}
    assert default_recommender.verse_song.tolist() == [positions[song_id] for song_id, _ in verses]
    # Each verse vector is the model's encoding of the verse text (its lines together, as one text); each song-text
    # vector the encoding of all of the song's distinct lines as one text.
    some = [0, len(verses) // 2, len(verses) - 1]
    encoded = default_recommender.encoder.encode([verses[i][1] for i in some])
    assert default_recommender.verse_vectors[some].numpy() == pytest.approx(encoded, abs=2e-2)
    texts = song_texts(catalog)
    assert len(texts) == len(catalog.songs) and default_recommender.song_text_vectors.shape[0] == len(catalog.songs)
    some_texts = [texts[0], texts[len(texts) // 2], texts[-1]]
    some_songs = [positions[song_id] for song_id, _ in some_texts]
    encoded = default_recommender.encoder.encode([text for _, text in some_texts])
    assert default_recommender.song_text_vectors[some_songs].numpy() == pytest.approx(encoded, abs=2e-2)

    query = "dancing in the summer rain"
    result = default_recommender.search_text(query, top_n=8, ranking="blend")
    assert result["ranking"] == "blend" and len(result["results"]) == 8
    vector = default_recommender.encoder.encode_queries([query])[0]
    units = default_recommender.song_units()
    assert units.verse_mean_vectors is not None and units.song_text_vectors is not None
    w_song, w_verses, w_window, w_text = SETTINGS.blend_weights
    for song in result["results"]:
        lines = set(catalog.song_lines(song["song_id"]))
        assert song["lines"] and all(line["text"] in lines for line in song["lines"])  # the song's own lines
        position = positions[song["song_id"]]
        verse_mean = default_recommender.verse_vectors[default_recommender.verse_song == position].numpy().mean(0)
        best_window = max(float(units.window_vectors[i] @ torch_tensor(vector))
                          for i in np.flatnonzero(units.window_song == position))
        expected = (w_song * float(units.song_vectors[position] @ torch_tensor(vector))
                    + w_verses * float(verse_mean @ vector / np.linalg.norm(verse_mean)) + w_window * best_window
                    + w_text * float(default_recommender.song_text_vectors[position] @ torch_tensor(vector)))
        assert song["score"] == pytest.approx(expected / (w_song + w_verses + w_window + w_text), abs=1e-4)


def torch_tensor(vector):
    import torch

    return torch.from_numpy(vector)


def test_set_without_song_texts_blends_the_other_terms_and_our_cache_is_rebuilt(tmp_path, small_catalog,
                                                                                  packaged_encoder, caplog):
    import numpy as np

    from recommender.embeddings import build_embeddings, read_manifest, write_manifest
    from recommender.service import model_slug

    small_catalog.save(tmp_path / "cat")
    cached = tmp_path / "cat" / "embeddings" / model_slug("baseline")
    build_embeddings(small_catalog, packaged_encoder, cached, show_progress_bar=False)
    manifest = read_manifest(cached)
    del manifest["verses"]["song_texts"]  # a set built before song texts
    write_manifest(cached, manifest)
    explicit = Recommender.open(catalog_dir=tmp_path / "cat", embeddings_dir=cached, model="baseline")
    assert explicit.song_text_vectors is None and explicit.verse_song is not None
    query = "headlights on the highway"
    result = explicit.search_text(query, top_n=3, ranking="blend")
    vector = torch_tensor(explicit.encoder.encode_queries([query])[0])
    units = explicit.song_units()
    w_song, w_verses, w_window, _ = SETTINGS.blend_weights
    positions = {song_id: i for i, song_id in enumerate(explicit.catalog.songs["song_id"])}
    for song in result["results"]:  # the weighted mean of the three terms the set has
        position = positions[song["song_id"]]
        windows = np.flatnonzero(units.window_song == position)
        best_window = max(float(units.window_vectors[i] @ vector) for i in windows)
        expected = (w_song * float(units.song_vectors[position] @ vector)
                    + w_verses * float(units.verse_mean_vectors[position] @ vector) + w_window * best_window)
        assert song["score"] == pytest.approx(expected / (w_song + w_verses + w_window), abs=1e-5)

    with caplog.at_level("WARNING", logger="recommender.service"):
        rebuilt = Recommender.open(catalog_dir=tmp_path / "cat", model="baseline")
    assert "have no song-text vectors; rebuilding" in caplog.text
    assert read_manifest(cached)["verses"]["song_texts"] is True and rebuilt.song_text_vectors.shape[0] == 3


def test_cached_set_without_verses_is_rebuilt_but_explicit_one_is_served(tmp_path, small_catalog, packaged_encoder,
                                                                          caplog):
    from recommender.embeddings import build_embeddings, read_manifest
    from recommender.service import model_slug

    small_catalog.save(tmp_path / "cat")
    cached = tmp_path / "cat" / "embeddings" / model_slug("baseline")
    build_embeddings(small_catalog, packaged_encoder, cached, show_progress_bar=False, verse_lines=0)  # an old set
    explicit = Recommender.open(catalog_dir=tmp_path / "cat", embeddings_dir=cached, model="baseline")
    assert explicit.verse_song is None and "verses" not in read_manifest(cached)
    fallback = explicit.search_text("headlights on the highway", top_n=3, ranking="blend")  # song vector + window
    assert fallback["results"][0]["title"] == "Night Drive"

    with caplog.at_level("WARNING", logger="recommender.service"):
        rebuilt = Recommender.open(catalog_dir=tmp_path / "cat", model="baseline")
    assert "have no verse vectors; rebuilding" in caplog.text
    assert read_manifest(cached)["verses"] == {**read_manifest(cached)["verses"], "lines": SETTINGS.verse_lines,
                                               "count": 3}
    assert rebuilt.verse_song.tolist() == [0, 1, 2]
    assert rebuilt.search_text("headlights on the highway", top_n=3, ranking="blend")["results"][0]["title"] == \
        "Night Drive"

    caplog.clear()
    build_embeddings(small_catalog, packaged_encoder, cached, show_progress_bar=False, verse_lines=1)
    with caplog.at_level("WARNING", logger="recommender.service"):
        again = Recommender.open(catalog_dir=tmp_path / "cat", model="baseline")
    assert f"have 1-line verses, not {SETTINGS.verse_lines}-line ones; rebuilding" in caplog.text
    assert read_manifest(cached)["verses"]["lines"] == SETTINGS.verse_lines and len(again.verse_song) == 3
