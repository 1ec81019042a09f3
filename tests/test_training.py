"""Training: a tiny model learns a known mapping; splits are deterministic and leak-free; metrics and the push gate."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.catalog import Catalog, make_song_id
from recommender.encoders import load_encoder
from space_config import SETTINGS
from training.evaluate import graded_metrics, paired_bootstrap, rank_metrics, song_metrics
from training.pairs import assign_splits, clean_pairs, restates_line, split_of, split_pairs
from training.report import push_decision


def synthetic_catalog(n_artists: int = 40, seed: int = 0) -> Catalog:
    """Lines use words from list B; each annotation uses the secretly mapped words of list A.

    A random-init model cannot know that A[i] means B[i]; a model trained on the train artists can, and that
    knowledge transfers to the held-out artists' new word combinations.
    """
    from tokenizers import Tokenizer

    from recommender.encoders import packaged_model_path

    vocab = Tokenizer.from_file(str(packaged_model_path() / "tokenizer.json")).get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.isascii() and 5 <= len(w) <= 8)
    rng = random.Random(seed)
    rng.shuffle(words)
    line_words, annotation_words = words[:40], words[40:80]
    songs, lines, pairs = [], [], []
    for artist_index in range(n_artists):
        artist, title = f"Artist {artist_index}", f"Song {artist_index}"
        song_id = make_song_id(artist, title)
        songs.append({"song_id": song_id, "title": title, "artist": artist, "valence": rng.random()})
        for position in range(6):
            picks = rng.sample(range(40), 3)
            line_id = len(lines)
            lines.append({"line_id": line_id, "song_id": song_id, "position": position,
                          "text": " ".join(line_words[i] for i in picks)})
            pairs.append({"pair_id": len(pairs), "song_id": song_id, "line_ids": [line_id],
                          "fragment": lines[-1]["text"],
                          "annotation": "this line is about " + " ".join(annotation_words[i] for i in picks)})
    return Catalog(pd.DataFrame(songs), pd.DataFrame(lines), pd.DataFrame(pairs))


@pytest.mark.slow
def test_tiny_model_learns_and_dev_mrr_improves(tmp_path, tiny_model_dir):
    from training.finetune import main

    catalog = synthetic_catalog()
    catalog.save(tmp_path / "cat")
    out = tmp_path / "run"
    assert main(["--catalog", str(tmp_path / "cat"), "--base", str(tiny_model_dir), "--out", str(out),
                 "--epochs", "4", "--batch-size", "16", "--learning-rate", "0.2", "--skip-eval"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] * 0.8
    assert summary["dev_best"]["dev_cosine_mrr@10"] > summary["dev_base"]["dev_cosine_mrr@10"] + 0.1
    assert (out / "model" / "README.md").read_text().count("## Lyrics meaning search") == 1
    assert json.loads((out / "splits.json").read_text())["songs"] == assign_splits(catalog)
    # The base stays the base for the rest of the process (evaluation, push gate): training used a copy.
    from sentence_transformers import SentenceTransformer

    probe = ["this line is about", "another probe text"]
    fresh = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(probe)
    np.testing.assert_allclose(load_encoder(str(tiny_model_dir)).model.encode(probe), fresh, atol=1e-6)
    assert not np.allclose(SentenceTransformer(str(out / "model"), device="cpu").encode(probe), fresh, atol=1e-3)


def test_split_is_deterministic_grouped_by_artist_and_leak_free():
    catalog = synthetic_catalog(n_artists=200)
    first, second = assign_splits(catalog), assign_splits(catalog)
    assert first == second
    splits, _, _ = split_pairs(catalog)
    songs = {name: set(frame["song_id"]) for name, frame in splits.items()}
    assert not songs["train"] & songs["dev"] and not songs["train"] & songs["test"] and not songs["dev"] & songs["test"]
    artists = {name: set(frame["artist"]) for name, frame in splits.items()}
    assert not artists["train"] & artists["test"]
    shares = np.array([len(songs[name]) for name in ("train", "dev", "test")]) / 200
    assert 0.6 < shares[0] < 0.8 and 0.07 < shares[1] < 0.25 and 0.07 < shares[2] < 0.25
    assert split_of("Some Artist") == split_of("  some artist ")
    assert split_of("Some Artist", seed=1) in ("train", "dev", "test")


def test_junk_pairs_are_filtered():
    catalog = synthetic_catalog(n_artists=2)
    catalog.pairs.loc[0, "annotation"] = "too short"
    catalog.pairs.loc[1, "annotation"] = f"{catalog.lines.loc[1, 'text']} yes {catalog.lines.loc[1, 'text']}"
    catalog.pairs.loc[2, "fragment"] = "[Chorus]"
    _, report = clean_pairs(catalog)
    assert report.dropped_short_annotation == 1 and report.dropped_restates_line == 1
    assert report.dropped_section_header == 1
    assert report.kept == len(catalog.pairs) - 3
    assert restates_line("I ran so far away", "I ran so far away")
    assert not restates_line("The narrator flees from an alien abduction in panic", "I ran so far away")


def test_rank_metrics_on_hand_computed_example():
    ranked = np.array([7, 3, 9, 1, *list(range(100, 196))])
    metrics = rank_metrics(ranked, np.array([3, 1]))
    assert metrics["line_mrr@10"] == pytest.approx(0.5)
    ideal = 1 + 1 / math.log2(3)
    assert metrics["line_ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert metrics["line_recall@10"] == 1.0 and metrics["line_recall@100"] == 1.0
    assert metrics["line_accuracy@1"] == 0.0
    missing = rank_metrics(ranked, np.array([5000]))
    assert missing == {"line_mrr@10": 0.0, "line_ndcg@10": 0.0, "line_recall@10": 0.0, "line_recall@100": 0.0,
                       "line_accuracy@1": 0.0}
    assert song_metrics([4, 2, 8], 8) == {"song_recall@10": 1.0, "song_mrr@10": pytest.approx(1 / 3)}
    assert song_metrics(list(range(20)), 15) == {"song_recall@10": 0.0, "song_mrr@10": 0.0}
    graded = graded_metrics([5, 1, 2], {1: 2, 9: 1})
    assert graded["mood_mrr@10"] == pytest.approx(0.5)
    assert graded["mood_recall@10"] == pytest.approx(0.5)
    assert graded["mood_ndcg@10"] == pytest.approx((3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_paired_bootstrap_centres_on_the_mean_difference():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = base + 0.1 + rng.normal(0, 0.01, 400)
    result = paired_bootstrap(base, better)
    assert result["delta"] == pytest.approx(0.1, abs=0.005)
    assert 0.09 < result["ci_low"] < 0.1 < result["ci_high"] < 0.11
    same = paired_bootstrap(base, base.copy())
    assert same["ci_low"] == same["ci_high"] == 0.0


def gate_result(line, song):
    return {"deltas": {"new vs old": {"line_mrr@10": dict(zip(("delta", "ci_low", "ci_high"), line, strict=True)),
                                      "song_recall@10": dict(zip(("delta", "ci_low", "ci_high"), song,
                                                                 strict=True))}}}


def test_push_gate_both_ways():
    wins, reason = push_decision(gate_result((0.1, 0.05, 0.15), (0.05, -0.01, 0.1)), candidate="new",
                                 incumbent="old")
    assert wins and "beats old" in reason
    wins, reason = push_decision(gate_result((0.02, -0.01, 0.05), (0.05, 0.01, 0.1)), candidate="new",
                                 incumbent="old")
    assert not wins and "CI must lie above 0" in reason
    wins, reason = push_decision(gate_result((0.1, 0.05, 0.15), (-0.1, -0.2, -0.01)), candidate="new",
                                 incumbent="old")
    assert not wins and "loses songs" in reason
    assert not push_decision(gate_result((0.1, 0.05, 0.15), (0, 0, 0)), candidate="x", incumbent="old")[0]


def with_user(result, ci, *, rankings=("seed",), candidate="new", incumbent="old"):
    """Add a user-style block whose user nDCG@10 difference (same ranking) has the CI ``ci``."""
    delta = dict(zip(("delta", "ci_low", "ci_high"), ci, strict=True))
    result["user"] = {"rankings": list(rankings), "pool": {"queries": 20},
                      "deltas": {f"{candidate} | {r} vs {incumbent} | {r}": {"user_ndcg@10": dict(delta)}
                                 for r in rankings}}
    return result


def test_push_gate_refuses_a_significant_user_style_loss():
    winning = ((0.1, 0.05, 0.15), (0.05, -0.01, 0.1))
    wins, reason = push_decision(with_user(gate_result(*winning), (-0.02, -0.08, 0.03)), candidate="new",
                                 incumbent="old")
    assert wins and "user nDCG@10 (seed) -0.0200 [-0.0800, +0.0300]" in reason
    wins, reason = push_decision(with_user(gate_result(*winning), (-0.1, -0.15, -0.04)), candidate="new",
                                 incumbent="old")
    assert not wins and "significant user-style loss against old" in reason and "20 judged visitor queries" in reason
    result = with_user(gate_result(*winning), (0.01, -0.01, 0.03), rankings=("seed", "other"))
    result["user"]["deltas"]["new | other vs old | other"]["user_ndcg@10"].update(ci_low=-0.2, ci_high=-0.01)
    wins, reason = push_decision(result, candidate="new", incumbent="old")
    assert not wins and "(other)" in reason
    wins, reason = push_decision(with_user(gate_result(*winning), (0, 0, 0), candidate="else"), candidate="new",
                                 incumbent="old")
    assert not wins and "no user-style comparison" in reason
    # A user-style gain does not rescue a model that fails the annotation gate.
    assert not push_decision(with_user(gate_result((0.02, -0.01, 0.05), (0.05, 0.01, 0.1)), (0.2, 0.1, 0.3)),
                             candidate="new", incumbent="old")[0]


def test_push_passes_the_user_queries_and_follows_the_gate(tmp_path, monkeypatch):
    import huggingface_hub

    from recommender.errors import ModelUnavailableError
    from training import finetune
    from training.judging import UnjudgedPairsError

    def no_finetuned_model(name):
        raise ModelUnavailableError(name)

    uploads, calls = [], []

    class FakeApi:
        def create_repo(self, *args, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            uploads.append(kwargs)

    monkeypatch.setattr(finetune, "load_encoder", no_finetuned_model)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    outcome = {}

    def fake_evaluate(catalog, models, **kwargs):
        calls.append(kwargs)
        if "raise" in outcome:
            raise outcome["raise"]
        return outcome["result"]

    monkeypatch.setattr(finetune, "evaluate", fake_evaluate)
    published = []
    monkeypatch.setattr(finetune, "publish_embeddings", lambda model_dir, args, api: published.append(model_dir))
    args = finetune.build_parser().parse_args(["--catalog", "cat", "--out", str(tmp_path), "--base", "old",
                                               "--push-to-hub", "me/model"])
    assert args.queries == str(finetune.DEFAULT_USER_QUERIES) and finetune.DEFAULT_USER_QUERIES.is_file()
    line_wins = ((0.1, 0.05, 0.15), (0.05, -0.01, 0.1))
    outcome["result"] = with_user(gate_result(*line_wins), (-0.1, -0.15, -0.04))
    assert not finetune.push("new", args) and not uploads
    assert calls[-1]["user_queries"] == args.queries
    outcome["result"] = with_user(gate_result(*line_wins), (0.01, -0.02, 0.04))
    assert finetune.push("new", args) and len(uploads) == 1
    assert "user nDCG@10" in uploads[0]["commit_message"]
    assert published == ["new"]  # a pushed winner gets its catalog embeddings rebuilt and published
    outcome["raise"] = UnjudgedPairsError([("u01", "s1")], "python -m training.judging unjudged ...")
    args.force = True
    assert not finetune.push("new", args) and len(uploads) == 1
    custom = finetune.build_parser().parse_args(["--catalog", "cat", "--out", "o", "--queries", "q.jsonl",
                                                 "--judgments", "j.jsonl", "--user-catalog", "uc"])
    assert (custom.queries, custom.judgments, custom.user_catalog) == ("q.jsonl", "j.jsonl", "uc")


def test_publish_embeddings_rebuilds_the_catalog_with_the_pushed_model(tmp_path, packaged_encoder):
    """After a push, the catalog and BOTH embedding sets go to the dataset repo in one commit; the fine-tuned set is
    named for the configured model and loads against the pushed weights (fingerprint checked)."""
    from recommender.catalog import Catalog
    from recommender.embeddings import load_embeddings, read_manifest
    from recommender.hub import EMBEDDINGS_PREFIX
    from recommender.service import default_catalog_dir
    from training import finetune

    model_dir = tmp_path / "model"
    packaged_encoder.model.save(str(model_dir))
    commits = []

    class FakeApi:
        def create_repo(self, *args, **kwargs):
            pass

        def create_commit(self, repo, operations, **kwargs):
            commits.append((repo, {op.path_in_repo: op.path_or_fileobj for op in operations}))
            for op in operations:  # keep the staged files: publish() removes its staging folder afterwards
                target = tmp_path / "repo" / op.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(Path(op.path_or_fileobj).read_bytes())
            return type("Commit", (), {"oid": "f" * 40})()

    args = finetune.build_parser().parse_args(["--catalog", str(default_catalog_dir()), "--out", str(tmp_path / "run"),
                                               "--dataset-repo", "me/lyrics-lines"])
    assert finetune.publish_embeddings(model_dir, args, api=FakeApi()) == "f" * 40
    (repo, files), = commits
    assert repo == "me/lyrics-lines" and "catalog/songs.parquet" in files
    finetuned_set = tmp_path / "repo" / EMBEDDINGS_PREFIX / SETTINGS.finetuned_model
    assert read_manifest(finetuned_set)["model_name"] == SETTINGS.finetuned_model
    assert (tmp_path / "repo" / EMBEDDINGS_PREFIX / SETTINGS.baseline_model / "manifest.json").is_file()
    pushed = load_encoder(str(model_dir))
    embeddings = load_embeddings(finetuned_set, catalog=Catalog.load(default_catalog_dir()), encoder=pushed)
    assert len(embeddings.texts) > 1000


@pytest.mark.parametrize("per_pair", [1, 2])
def test_mined_negatives_are_the_closest_other_lines_never_a_positive(packaged_encoder, per_pair):
    """With as many candidates allowed as negatives asked for, the mined negatives are exactly the corpus lines the
    model ranks first among those that are not a positive of the anchor (brute-force reference); every pair keeps
    its same-song negative."""
    from training.finetune import add_mined_negatives

    frame = pd.DataFrame({
        "anchor": ["the singer misses the sea and the boats of his childhood town",
                   "the singer misses the sea and the boats of his childhood town",
                   "a warning about drinking too much before driving home"],
        "positive": ["harbour lights and fishing boats", "salt wind on the quay", "one more round then the wheel"],
        "negative": ["I wore a yellow dress", "the clock on the wall", "my mother sang to me"]})
    corpus = ["harbour lights and fishing boats", "salt wind on the quay", "one more round then the wheel",
              "sailing ships at the old port", "whiskey bottles on the dashboard", "a garden full of roses",
              "the train leaves at noon"]
    mined = add_mined_negatives(frame, packaged_encoder.model, corpus, seed=1, per_pair=per_pair, range_max=per_pair)
    assert len(mined) == len(frame)
    columns = ["anchor", "positive", "negative"]
    assert set(mined[columns].itertuples(index=False)) == set(frame[columns].itertuples(index=False))
    vectors = packaged_encoder.model.encode(corpus, normalize_embeddings=True)
    for anchor, group in frame.groupby("anchor"):
        query = packaged_encoder.model.encode([anchor], normalize_embeddings=True)[0]
        ranked = [corpus[i] for i in np.argsort(-(vectors @ query))]
        expected = [text for text in ranked if text not in set(group["positive"])][:per_pair]
        for _, row in mined[mined["anchor"] == anchor].iterrows():
            assert sorted(row[f"mined_negative_{i}"] for i in range(1, per_pair + 1)) == sorted(expected)


def test_average_weights_is_the_elementwise_mean_of_the_experts(tiny_model_dir):
    import copy

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    from recommender.errors import RecommenderError
    from training.finetune import average_weights

    first = SentenceTransformer(str(tiny_model_dir), device="cpu")
    second = copy.deepcopy(first)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.copy_(torch.randn_like(parameter))
    merged = average_weights([first, second])
    for (name, mean), one, two in zip(merged.named_parameters(), first.parameters(), second.parameters(),
                                      strict=True):
        assert torch.allclose(mean, (one + two) / 2), name
    assert not torch.allclose(next(merged.parameters()), next(first.parameters()))
    other = SentenceTransformer(modules=[copy.deepcopy(first[0]), Dense(32, 8)], device="cpu")
    with pytest.raises(RecommenderError, match="different architectures"):
        average_weights([first, other])


@pytest.mark.slow
def test_annotation_expert_soup_saves_the_mean_of_both_members(tmp_path, tiny_model_dir, caplog):
    """The multi-task model and an annotation-only expert are saved; the model is their weight mean; a resume
    reuses both instead of training again."""
    import torch
    from sentence_transformers import SentenceTransformer

    from training.finetune import main
    from training.visitor_queries import fingerprint

    catalog = synthetic_catalog()
    catalog.save(tmp_path / "cat")
    queries = tmp_path / "visitor_queries.jsonl"
    queries.write_text("".join(
        json.dumps({"song_id": song, "query": f"mood of {song} number {position}", "positions": [position],
                    "fingerprint": fingerprint([text])}) + "\n"
        for song, position, text in zip(catalog.lines["song_id"], catalog.lines["position"], catalog.lines["text"],
                                        strict=True) if position < 2))
    out = tmp_path / "run"
    command = ["--catalog", str(tmp_path / "cat"), "--base", str(tiny_model_dir), "--out", str(out), "--epochs", "2",
               "--batch-size", "16", "--learning-rate", "0.2", "--skip-eval", "--visitor-queries", str(queries),
               "--annotation-expert"]
    assert main(command) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["soup"] == ["joint", "annotations"]
    assert summary["dev_best"]["dev_cosine_mrr@10"] > summary["dev_base"]["dev_cosine_mrr@10"] + 0.1
    members = [SentenceTransformer(str(out / "experts" / name / "model"), device="cpu")
               for name in ("joint", "annotations")]
    (joint,), (annotations,), (merged,) = (list(model.parameters()) for model in (*members, SentenceTransformer(
        str(out / "model"), device="cpu")))
    assert not torch.allclose(joint, annotations, atol=1e-3)  # the members learnt different things
    assert torch.allclose(merged, (joint + annotations) / 2, atol=1e-6)
    assert "**Model soup:**" in (out / "model" / "README.md").read_text()
    # A resumed run finds both members finished and rebuilds the same mean without training again.
    (out / "model" / "model.safetensors").unlink()
    caplog.clear()
    caplog.set_level("INFO")
    assert main([*command, "--resume"]) == 0
    assert caplog.text.count("finished before: loading it") == 2
    assert "Resuming training" not in caplog.text
    (resumed,) = SentenceTransformer(str(out / "model"), device="cpu").parameters()
    assert torch.allclose(resumed, merged)


@pytest.mark.parametrize(("per_pair", "expected"), [(1, "and a line of another training song mined"),
                                                    (4, "and 4 lines of other training songs mined")])
def test_model_card_says_how_many_mined_negatives_each_pair_had(per_pair, expected):
    from training.report import model_card_section

    summary = {"base": "baseline", "base_model_id": "sentence-transformers/all-MiniLM-L6-v2", "pair_filter": "kept 10",
               "split_pairs": {"train": 8}, "split_songs": {"train": 3}, "train_rows": {"pairs": 8},
               "args": {"mined_negatives": True, "mined_negatives_per_pair": per_pair}}
    card = model_card_section(summary, None)
    assert expected in card
    assert "mined" not in model_card_section({**summary, "args": {"mined_negatives": False}}, None)


@pytest.mark.parametrize("count", ["0", "-2"])
def test_mined_negatives_per_pair_below_one_is_refused_with_a_message(count, capsys):
    from training.finetune import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--catalog", "c", "--out", "o", "--mined-negatives-per-pair", count])
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "cached"), [([], False), (["--batch-size", "128"], True),
                                               (["--batch-size", "128", "--no-cached-loss"], False),
                                               (["--cached-loss"], True)])
def test_cached_loss_is_automatic_from_batch_128_and_can_be_chosen(flags, cached, packaged_encoder):
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    from training.finetune import build_parser, losses_for
    from training.losses import LengthSortedMultipleNegativesRankingLoss

    args = build_parser().parse_args(["--catalog", "c", "--out", "o", *flags])
    loss = losses_for(packaged_encoder.model, ["pairs", "visitors"], args)
    expected = CachedMultipleNegativesRankingLoss if cached else LengthSortedMultipleNegativesRankingLoss
    assert type(loss["pairs"]) is expected
    assert type(loss["visitors"]) is LengthSortedMultipleNegativesRankingLoss
