"""Visitor-style training queries: export → writer → record round trip, the leakage guard, the quote filter."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from recommender.catalog import Catalog
from recommender.errors import RecommenderError
from tests.test_training import synthetic_catalog
from training.pairs import assign_splits
from training.visitor_queries import copies_lyrics, distinct_lines, main, read_rows, visitor_pairs


@pytest.fixture
def catalog_dir(tmp_path):
    catalog = synthetic_catalog(n_artists=30)
    catalog.save(tmp_path / "cat")
    return tmp_path / "cat"


def exported_songs(directory) -> dict[str, list[str]]:
    """song_id → the numbered lines a writer sees, parsed back from the export files."""
    songs: dict[str, list[str]] = {}
    for path in sorted(directory.glob("songs_*.txt")):
        for block in path.read_text().split("### song_id=")[1:]:
            song_id, *numbered = block.strip().splitlines()
            songs[song_id] = [re.sub(r"^\d+\. ", "", line) for line in numbered]
    return songs


def test_export_then_record_trains_on_the_chosen_lines_of_train_songs_only(tmp_path, catalog_dir, capsys):
    catalog = Catalog.load(catalog_dir)
    split = assign_splits(catalog)
    queries = tmp_path / "visitor_queries.jsonl"
    assert main(["export", "--catalog", str(catalog_dir), "--out", str(tmp_path / "export"), "--per-file", "7",
                 "--queries", str(queries)]) == 0
    shown = exported_songs(tmp_path / "export")
    assert shown and set(shown) == {song for song, name in split.items() if name == "train"}
    assert len(list((tmp_path / "export").glob("songs_*.txt"))) == -(-len(shown) // 7)
    song_id = next(iter(shown))
    written = tmp_path / "writer.jsonl"
    written.write_text("\n".join(json.dumps(row) for row in [
        {"song_id": song_id, "query": "a quiet road home at dusk", "lines": [2, 3]},
        {"song_id": song_id, "query": "too short", "lines": [1]},
        {"song_id": song_id, "query": "lines out of range here", "lines": [99]},
        {"song_id": "not-a-song", "query": "some query about nothing", "lines": [1]},
        "not an object",
    ]) + "\n")
    assert main(["record", "--catalog", str(catalog_dir), "--input", str(written), "--queries", str(queries)]) == 0
    assert "dropped: {'unknown_song': 1, 'bad_lines': 1, 'length': 1, 'copies_lyrics': 0, 'malformed': 1}" \
        in capsys.readouterr().out
    rows = read_rows(queries)
    assert [(row["song_id"], row["query"]) for row in rows] == [(song_id, "a quiet road home at dusk")]
    pairs, report = visitor_pairs(queries, catalog, split)
    assert pairs["line"].tolist() == shown[song_id][1:3]
    assert set(pairs["query"]) == {"a quiet road home at dusk"} and report.kept == 1


def test_rows_of_dev_or_test_songs_and_changed_lines_are_dropped(tmp_path, catalog_dir):
    catalog = Catalog.load(catalog_dir)
    split = assign_splits(catalog)
    lines = distinct_lines(catalog)
    by_split = {name: next(song for song, s in split.items() if s == name) for name in ("train", "dev", "test")}
    written = tmp_path / "writer.jsonl"
    written.write_text("".join(json.dumps({"song_id": song, "query": f"a long {name} drive at night",
                                           "lines": [1]}) + "\n" for name, song in by_split.items()))
    queries = tmp_path / "visitor_queries.jsonl"
    assert main(["record", "--catalog", str(catalog_dir), "--input", str(written), "--queries", str(queries)]) == 0
    pairs, report = visitor_pairs(queries, catalog, split)
    assert set(pairs["song_id"]) == {by_split["train"]}
    assert report.dropped_not_train_split == 2
    edited = catalog.lines.copy()
    first_line = lines[by_split["train"]][0][1]
    edited.loc[edited["text"] == first_line, "text"] = "an edited line"
    _, report = visitor_pairs(queries, Catalog(catalog.songs, edited, catalog.pairs), split)
    assert report.kept == 0 and report.dropped_lines_changed == 1


def test_a_malformed_queries_file_names_the_bad_line(tmp_path, catalog_dir):
    queries = tmp_path / "visitor_queries.jsonl"
    queries.write_text(json.dumps({"song_id": "x", "query": "q", "positions": [1], "fingerprint": "ab"}) + "\n"
                       + json.dumps({"song_id": "x", "query": "q", "positions": "1"}) + "\n")
    with pytest.raises(RecommenderError, match=r"visitor_queries.jsonl:2"):
        read_rows(queries)
    assert main(["export", "--catalog", str(catalog_dir), "--out", str(tmp_path / "o"), "--queries",
                 str(queries)]) == 2


def test_copied_runs_of_lyrics_are_detected_case_and_punctuation_blind():
    lyrics = ["Driving down the Empty Road, alone", "other words"]
    assert copies_lyrics("sad: driving down the empty street", lyrics)
    assert not copies_lyrics("driving down an empty road", lyrics)
    assert not copies_lyrics("the empty road", lyrics)


@pytest.mark.slow
def test_finetune_trains_on_visitor_queries_beside_the_annotations(tmp_path, tiny_model_dir):
    """The visitor queries become their own dataset (own batches, own loss) and the summary says what was kept."""
    from training.finetune import main as finetune
    from training.visitor_queries import fingerprint

    catalog = synthetic_catalog()
    catalog.save(tmp_path / "cat")
    split = assign_splits(catalog)
    queries = tmp_path / "visitor_queries.jsonl"
    rows = [{"song_id": song, "query": f"mood of {song} number {position}", "positions": [position],
             "fingerprint": fingerprint([text])}
            for song, position, text in zip(catalog.lines["song_id"], catalog.lines["position"],
                                            catalog.lines["text"], strict=True) if position < 2]
    queries.write_text("".join(json.dumps(row) + "\n" for row in rows))
    train_rows = sum(split[row["song_id"]] == "train" for row in rows)
    assert finetune(["--catalog", str(tmp_path / "cat"), "--base", str(tiny_model_dir), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--batch-size", "16", "--skip-eval", "--visitor-queries", str(queries),
                     "--visitor-song-lines", "0"]) == 0
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["train_rows"]["visitors"] == train_rows
    assert summary["visitor_queries"]["kept"] == train_rows
    assert summary["visitor_queries"]["dropped_not_train_split"] == len(rows) - train_rows
    assert "Visitor-style queries" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.slow
def test_evaluate_scores_held_out_visitor_queries_against_the_public_search_path(tmp_path, packaged_encoder):
    """Each query must find its own song; the metric equals what search_text returns, per ranking and split."""
    from recommender.service import Recommender, default_catalog_dir
    from training.evaluate import VISITOR_RANKINGS, evaluate
    from training.visitor_queries import fingerprint

    catalog_dir = default_catalog_dir()
    catalog = Catalog.load(catalog_dir)
    split = assign_splits(catalog)
    queries = ["late night drive alone", "summer at the beach with friends", "missing home and family",
               "a storm coming over the fields", "dancing until the sun comes up", "growing old together"]
    songs = catalog.songs["song_id"].tolist()
    rows = [{"song_id": songs[(i * 7) % len(songs)], "query": query, "positions": [0], "fingerprint": fingerprint([""])}
            for i, query in enumerate(queries)]
    path = tmp_path / "visitor_queries_heldout.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, {**rows[0], "song_id": "not-in-catalog"}]))

    result = evaluate(catalog_dir, ["baseline"], split="all", bm25=False, visitor_queries=path)
    assert result["counts"]["visitor_queries"] == len(rows)
    recommender = Recommender.open(catalog_dir=catalog_dir, model="baseline")
    for ranking in VISITOR_RANKINGS:
        found = [row["song_id"] in [hit["song_id"] for hit in recommender.search_text(row["query"], top_n=10,
                                                                                     ranking=ranking)["results"]]
                 for row in rows]
        assert result["models"]["baseline"][f"visitor_{ranking}_recall@10"] == pytest.approx(sum(found) / len(rows))
    held_out = [row for row in rows if split[row["song_id"]] == "test"]
    assert evaluate(catalog_dir, ["baseline"], split="test", bm25=False,
                    visitor_queries=path)["counts"]["visitor_queries"] == len(held_out)


def test_checkpoints_are_selected_on_annotations_and_dev_visitor_queries_together(tmp_path, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    from training.finetune import BEST_METRIC, selection_evaluator
    from training.pairs import split_pairs
    from training.visitor_queries import fingerprint

    catalog = synthetic_catalog()
    splits, split, _ = split_pairs(catalog)
    path = tmp_path / "visitor_queries_heldout.jsonl"
    assert selection_evaluator(splits["dev"], catalog, split, None)[1] == BEST_METRIC
    path.write_text("")
    assert selection_evaluator(splits["dev"], catalog, split, path)[1] == BEST_METRIC  # no dev queries: annotations
    rows = [{"song_id": song, "query": f"query for {song} in {name}", "positions": [0], "fingerprint": fingerprint([])}
            for song, name in split.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    evaluator, metric = selection_evaluator(splits["dev"], catalog, split, path)
    assert metric == "eval_sequential_score"
    visitors = evaluator.evaluators[1]
    dev_songs = [row["song_id"] for row in rows if split[row["song_id"]] == "dev"]
    assert sorted(visitors.queries) == sorted(f"query for {song} in dev" for song in dev_songs)
    for query_id, song in zip(visitors.queries_ids, dev_songs, strict=True):
        song_lines = set(catalog.lines.loc[catalog.lines["song_id"] == song, "text"])
        assert {visitors.corpus[visitors.corpus_ids.index(doc)] for doc in visitors.relevant_docs[query_id]} \
            == song_lines
    scores = evaluator(SentenceTransformer(str(tiny_model_dir), device="cpu"))
    assert scores["sequential_score"] == pytest.approx((scores["dev_cosine_ndcg@10"]
                                                        + scores["dev_visitors_cosine_ndcg@10"]) / 2)


def test_song_level_positives_are_other_long_lines_of_the_same_song():
    from training.visitor_queries import with_song_lines

    songs = pd.DataFrame({"song_id": ["a", "b"], "title": ["A", "B"], "artist": ["x", "y"], "valence": [0.1, 0.9]})
    texts = {"a": ["the long road home tonight", "oh yeah", "we drove until the morning came", "lights along the shore",
                   "every mile a memory of you"],
             "b": ["a different song entirely here"]}
    lines = pd.DataFrame([{"line_id": i, "song_id": song, "position": p, "text": text}
                          for i, (song, p, text) in enumerate((song, p, text) for song, rows in texts.items()
                                                              for p, text in enumerate(rows))])
    catalog = Catalog(songs, lines, pd.DataFrame(columns=["pair_id", "song_id", "line_ids", "fragment", "annotation"]))
    pairs = pd.DataFrame({"song_id": ["a", "b"], "query": ["night drive", "something else"],
                          "line": ["the long road home tonight", "a different song entirely here"]})
    extended = with_song_lines(pairs, catalog, per_query=2, seed=1)
    added = extended.iloc[len(pairs):]
    assert len(added) == 2 and set(added["song_id"]) == {"a"} and set(added["query"]) == {"night drive"}
    assert set(added["line"]) <= {"we drove until the morning came", "lights along the shore",
                                  "every mile a memory of you"}
    assert extended.equals(with_song_lines(pairs, catalog, per_query=2, seed=1))
    assert len(with_song_lines(pairs, catalog, per_query=9, seed=1)) == len(pairs) + 3
    assert with_song_lines(pairs, catalog, per_query=0, seed=1).equals(pairs)


def test_verse_positives_are_the_served_verse_of_the_first_chosen_line():
    """The added positive is byte-for-byte the verse text the embedding set encodes for the blend ranking."""
    from recommender.embeddings import verse_texts
    from training.visitor_queries import with_verses

    songs = pd.DataFrame({"song_id": ["a", "b"], "title": ["A", "B"], "artist": ["x", "y"], "valence": [0.1, 0.9]})
    texts = {"a": ["one line here", "two lines here", "three lines", "one line here", "four and more", "five"],
             "b": ["a single verse song"]}
    lines = pd.DataFrame([{"line_id": i, "song_id": song, "position": p, "text": text}
                          for i, (song, p, text) in enumerate((song, p, text) for song, rows in texts.items()
                                                              for p, text in enumerate(rows))])
    catalog = Catalog(songs, lines, pd.DataFrame(columns=["pair_id", "song_id", "line_ids", "fragment", "annotation"]))
    pairs = pd.DataFrame({"song_id": ["a", "a", "a", "b"], "query": ["late night", "late night", "morning", "alone"],
                          "line": ["five", "three lines", "two lines here", "a single verse song"]})
    extended = with_verses(pairs, catalog, lines=2)
    verses = dict(((song, query), line) for song, query, line in
                  extended.iloc[len(pairs):][["song_id", "query", "line"]].itertuples(index=False))
    served = [text for _, text in verse_texts(catalog, 2)]
    # Distinct lines of "a": one, two, three, four, five → verses [one, two], [three, four], [five].
    assert verses == {("a", "late night"): "five", ("a", "morning"): "one line here\ntwo lines here",
                      ("b", "alone"): "a single verse song"}
    assert set(verses.values()) <= set(served)
    assert with_verses(pairs, catalog, lines=0).equals(pairs)


def test_lines_per_query_are_capped_by_a_seeded_sample_of_each_querys_own_lines():
    from training.visitor_queries import at_most_lines_per_query

    pairs = pd.DataFrame({"song_id": ["a"] * 4 + ["b"], "query": ["night"] * 3 + ["rain", "night"],
                          "line": ["l1", "l2", "l3", "l4", "m1"]})
    capped = at_most_lines_per_query(pairs, 2, seed=3)
    assert capped.groupby(["song_id", "query"]).size().to_dict() == {("a", "night"): 2, ("a", "rain"): 1,
                                                                    ("b", "night"): 1}
    assert set(capped.loc[capped["query"] == "night", "line"]) - {"m1"} <= {"l1", "l2", "l3"}
    assert capped.equals(at_most_lines_per_query(pairs, 2, seed=3))
    assert at_most_lines_per_query(pairs, 0, seed=3).equals(pairs)
