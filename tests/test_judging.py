"""User-style evaluation: blind pooling of (model, ranking) configurations, recording grades, scoring and refusal."""

from __future__ import annotations

import json
import math
import shlex

import pytest

from recommender.catalog import Catalog
from recommender.ranking import RANKING_NAMES
from recommender.service import Recommender, default_catalog_dir
from training import evaluate as evaluate_module
from training import judging
from training.evaluate import user_metrics

QUERIES = [{"query_id": "q1", "query": "driving alone at night after a breakup"},
           {"query_id": "q2", "query": "dancing in the summer rain"},
           {"query_id": "q3", "query": "grieving my mother"}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A second, random static model: a different configuration that pools different songs, built offline."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    from recommender.encoders import packaged_model_path

    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(str(packaged_model_path() / "tokenizer.json"))
    model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=32)], device="cpu")
    directory = tmp_path_factory.mktemp("judging") / "tiny-encoder"
    model.save(str(directory))
    return str(directory)


@pytest.fixture(scope="module")
def catalog_dir(packaged_encoder) -> str:
    return str(default_catalog_dir())


@pytest.fixture
def queries_file(tmp_path):
    path = tmp_path / "eval" / "user_queries.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    return path


def expected_pool(catalog_dir: str, models: list[str], rankings: list[str]) -> set[tuple[str, str]]:
    """The pool computed straight from the public search path (independently of training.judging)."""
    pairs = set()
    for model in models:
        recommender = Recommender.open(catalog_dir=catalog_dir, model=model)
        for ranking in rankings:
            for query in QUERIES:
                result = recommender.search_text(query["query"], top_n=10, ranking=ranking)
                pairs |= {(query["query_id"], song["song_id"]) for song in result["results"]}
    return pairs


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_user_metrics_on_hand_computed_example():
    grades = {"a": 0, "b": 2, "c": 1, "x": 2}  # "x" was judged (pooled by another configuration), not retrieved
    metrics = user_metrics(["a", "b", "c", "d"], grades)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert metrics["user_ndcg@10"] == pytest.approx(dcg / ideal)
    assert metrics["user_p@10"] == pytest.approx(0.2)
    assert metrics["user_p2@10"] == pytest.approx(0.1)
    perfect = user_metrics(["b", "x", "c", "a"], grades)
    assert perfect == {"user_ndcg@10": pytest.approx(1.0), "user_p@10": pytest.approx(0.3),
                       "user_p2@10": pytest.approx(0.2)}
    assert user_metrics(["a"], {"a": 0})["user_ndcg@10"] == 0.0
    assert user_metrics([f"s{i}" for i in range(15)], {f"s{i}": 2 for i in range(15)})["user_p2@10"] == 1.0


def test_unjudged_lists_exactly_the_pooled_pairs_blind(tmp_path, queries_file, catalog_dir, tiny_model, capsys):
    models, rankings = ["baseline", tiny_model], ["seed"]
    pool = expected_pool(catalog_dir, models, rankings)
    judged = sorted(pool)[:2]
    judgments = tmp_path / "judgments.jsonl"
    judging.write_judgments(judgments, [{"query_id": q, "song_id": s, "grade": 1, "artist": "", "title": ""}
                                        for q, s in judged])
    common = ["unjudged", "--catalog", catalog_dir, "--queries", str(queries_file), "--judgments", str(judgments),
              "--models", *models, "--rankings", *rankings]
    out = tmp_path / "to_judge.jsonl"
    assert judging.main([*common, "--out", str(out)]) == 0
    rows = read_rows(out)
    assert {(row["query_id"], row["song_id"]) for row in rows} == pool - set(judged)
    assert len(rows) == len(pool) - 2
    catalog = Catalog.load(catalog_dir)
    for row in rows:
        assert set(row) == {"query_id", "query", "song_id", "artist", "title", "lyrics"}
        assert row["lyrics"] == "\n".join(catalog.song_lines(row["song_id"]))
    assert [row["query_id"] for row in rows] == sorted(row["query_id"] for row in rows)
    # Not in rank order (a seeded shuffle), and the same shuffle every time.
    first_ranked = Recommender.open(catalog_dir=catalog_dir, model="baseline").search_text(QUERIES[0]["query"],
                                                                                          top_n=10, ranking="seed")
    shown = [row["song_id"] for row in rows if row["query_id"] == "q1"]
    ranked = [song["song_id"] for song in first_ranked["results"] if song["song_id"] in shown]
    assert [song for song in shown if song in ranked] != ranked
    summary = capsys.readouterr().err
    assert f"pool {len(pool)} pairs" in summary and f"{len(pool) - 2} unjudged" in summary and "2 judged" in summary

    assert judging.main(common) == 0
    text = capsys.readouterr().out
    assert all(row["song_id"] in text and row["title"] in text for row in rows)
    headers = "\n".join(line for line in text.splitlines() if not line.startswith("    "))  # lyrics are indented
    for name in ("baseline", "tiny-encoder", tiny_model, " | seed"):
        assert name not in text
    for name in ("seed", "rank", "score", "#"):
        assert name not in headers
    assert judging.main([*common, "--out", str(tmp_path / "again.jsonl")]) == 0
    assert read_rows(tmp_path / "again.jsonl") == rows


def test_record_merges_refuses_conflicts_and_validates(tmp_path, queries_file, catalog_dir, capsys):
    catalog = Catalog.load(catalog_dir)
    songs = catalog.songs["song_id"].tolist()
    judgments = tmp_path / "eval" / "judgments.jsonl"
    graded = tmp_path / "graded.jsonl"
    write_rows(graded, [{"query_id": "q2", "song_id": songs[1], "grade": 2, "lyrics": "ignored"},
                        {"query_id": "q1", "song_id": songs[0], "grade": 0, "note": "a shared word only"}])
    record = ["record", "--judgments", str(judgments), "--queries", str(queries_file), "--catalog", catalog_dir]
    assert judging.main([*record, "--input", str(graded)]) == 0
    rows = read_rows(judgments)
    assert [(r["query_id"], r["song_id"], r["grade"]) for r in rows] == [("q1", songs[0], 0), ("q2", songs[1], 2)]
    assert rows[0]["artist"] == catalog.songs["artist"][0] and rows[0]["title"] == catalog.songs["title"][0]
    assert all("lyrics" not in r and set(r) == {"query_id", "song_id", "grade", "artist", "title"} for r in rows)
    assert "2 new" in capsys.readouterr().out
    assert judging.main([*record, "--input", str(graded)]) == 0
    assert "0 new, 0 changed, 2 unchanged" in capsys.readouterr().out

    before = judgments.read_bytes()
    write_rows(graded, [{"query_id": "q1", "song_id": songs[0], "grade": 1},
                        {"query_id": "q3", "song_id": songs[2], "grade": 1}])
    assert judging.main([*record, "--input", str(graded)]) == 1
    error = capsys.readouterr().err
    assert f"q1 {songs[0]}: judged 0, input 1" in error and "--overwrite" in error
    assert judgments.read_bytes() == before
    assert judging.main([*record, "--input", str(graded), "--overwrite"]) == 0
    assert judging.load_judgments(judgments) == {("q1", songs[0]): 1, ("q2", songs[1]): 2, ("q3", songs[2]): 1}
    assert sorted(p.name for p in judgments.parent.iterdir()) == ["judgments.jsonl", "user_queries.jsonl"]

    before = judgments.read_bytes()
    for bad in (3, -1, "2", True, 1.5, None):
        write_rows(graded, [{"query_id": "q1", "song_id": songs[5], "grade": 2},
                            {"query_id": "q1", "song_id": songs[6], "grade": bad}])
        assert judging.main([*record, "--input", str(graded)]) == 2
        assert "grade must be 0, 1 or 2" in capsys.readouterr().err
    write_rows(graded, [{"query_id": "q9", "song_id": songs[5], "grade": 2}])
    assert judging.main([*record, "--input", str(graded)]) == 2
    assert "'q9' is not in" in capsys.readouterr().err
    write_rows(graded, [{"query_id": "q1", "song_id": "no-such-song", "grade": 2}])
    assert judging.main([*record, "--input", str(graded)]) == 2
    write_rows(graded, [{"query_id": "q1", "song_id": songs[5], "grade": 2},
                        {"query_id": "q1", "song_id": songs[5], "grade": 0}])
    assert judging.main([*record, "--input", str(graded)]) == 2
    assert judgments.read_bytes() == before

    # Without --catalog, artist and title come from the input rows.
    write_rows(graded, [{"query_id": "q3", "song_id": "x-song", "grade": 2, "artist": "A", "title": "T"}])
    assert judging.main(["record", "--judgments", str(judgments), "--input", str(graded)]) == 0
    assert read_rows(judgments)[-1] == {"query_id": "q3", "song_id": "x-song", "grade": 2, "artist": "A",
                                        "title": "T"}


def test_evaluate_refuses_unjudged_pairs_then_scores_every_configuration(tmp_path, queries_file, catalog_dir,
                                                                         tiny_model, capsys):
    models, rankings = ["baseline", tiny_model], list(RANKING_NAMES[:2])
    evaluate_args = ["--catalog", catalog_dir, "--models", *models, "--rankings", *rankings, "--no-bm25",
                     "--queries", str(queries_file), "--out", str(tmp_path / "report")]
    assert evaluate_module.main(evaluate_args) == 3
    error = capsys.readouterr().err
    pool = expected_pool(catalog_dir, models, rankings)
    assert f"{len(pool)} pooled (query, top-10 song) pairs are unjudged" in error
    command = error.strip().splitlines()[-1].strip()
    assert command.startswith("python -m training.judging unjudged ")
    assert not (tmp_path / "report").exists()

    listing = tmp_path / "to_judge.jsonl"
    assert judging.main([*shlex.split(command)[3:], "--out", str(listing)]) == 0
    capsys.readouterr()
    rows = read_rows(listing)
    assert {(r["query_id"], r["song_id"]) for r in rows} == pool
    # Stand-in grades for the test only (real ones come from a person reading the lyrics).
    for row in rows:
        row["grade"] = sum(map(ord, row["song_id"])) % 3
    write_rows(listing, rows)
    judgments = queries_file.parent / "judgments.jsonl"  # the default: next to the queries file
    assert judging.main(["record", "--judgments", str(judgments), "--input", str(listing)]) == 0
    assert evaluate_module.main(evaluate_args) == 0
    capsys.readouterr()

    result = json.loads((tmp_path / "report" / "metrics.json").read_text())
    user = result["user"]
    assert "line_mrr@10" in result["models"]["baseline"]
    labels = [judging.config_label(m, r) for m in models for r in rankings]
    assert list(user["configs"]) == labels and user["reference"] == labels[0]
    assert user["pool"]["pairs"] == len(pool) and user["pool"]["queries"] == 3
    grades = judging.load_judgments(judgments)
    recommender = Recommender.open(catalog_dir=catalog_dir, model=tiny_model)
    for ranking in rankings:
        per_query = []
        for query in QUERIES:
            ranked = [s["song_id"] for s in recommender.search_text(query["query"], top_n=10,
                                                                    ranking=ranking)["results"]]
            per_query.append(user_metrics(ranked, {s: g for (q, s), g in grades.items() if q == query["query_id"]}))
        for metric in evaluate_module.USER_METRICS:
            assert user["configs"][judging.config_label(tiny_model, ranking)][metric] == pytest.approx(
                sum(m[metric] for m in per_query) / 3)
    same_ranking = f"{judging.config_label(tiny_model, rankings[1])} vs {judging.config_label('baseline', rankings[1])}"
    assert set(user["deltas"]) == {f"{label} vs {labels[0]}" for label in labels[1:]} | {same_ranking}
    for deltas in user["deltas"].values():
        for metric in evaluate_module.USER_METRICS:
            assert deltas[metric]["ci_low"] <= deltas[metric]["delta"] + 1e-12
            assert deltas[metric]["delta"] <= deltas[metric]["ci_high"] + 1e-12
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## User-style queries" in report and f"| {labels[0]} |" in report and "95% paired-bootstrap CI" in report
    assert (tmp_path / "report" / "chart.png").stat().st_size > 0
