"""Fine-tune a sentence-transformers model on (Genius annotation → annotated lyric line) pairs.

    python -m training.finetune --catalog DIR --base MODEL --out DIR [--epochs N] [--batch-size B] [--resume]
                                [--push-to-hub REPO [--force]]

The defaults are the CPU recipe (packaged MiniLM, one epoch, same-song and mined hard negatives, visitor-style
queries beside the annotations); the GPU recipe for all-distilroberta-v1 is documented in the README. Training uses
SentenceTransformerTrainer with MultipleNegativesRankingLoss (embedded in length-sorted chunks, training/losses.py;
the cached variant for large batches) and the NO_DUPLICATES batch sampler, keeps the best checkpoint by dev
annotation + dev visitor-query retrieval, and can resume.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import re
import sys
from pathlib import Path

import pandas as pd

from recommender.catalog import Catalog
from recommender.encoders import load_encoder
from recommender.errors import RecommenderError
from space_config import SETTINGS
from training.evaluate import default_visitor_eval, evaluate, load_visitor_queries, write_report
from training.judging import UnjudgedPairsError
from training.pairs import DEFAULT_SEED, song_line_texts, split_pairs, write_splits
from training.report import push_decision, write_model_card
from training.visitor_queries import (
    DEFAULT_VISITOR_QUERIES,
    at_most_lines_per_query,
    visitor_pairs,
    with_song_lines,
    with_verses,
)
from training.visitor_queries import training_frame as visitor_training_frame

logger = logging.getLogger(__name__)

BEST_METRIC = "eval_dev_cosine_mrr@10"
CACHED_LOSS_FROM_BATCH = 128
DEFAULT_USER_QUERIES = Path(__file__).resolve().parent / "eval" / "user_queries.jsonl"


def same_song_negatives(pairs: pd.DataFrame, catalog: Catalog, *, seed: int = DEFAULT_SEED) -> list[str]:
    """For each pair, another line of the same song that is not part of the annotated fragment.

    Lines of the same song share topic and words with the right line: the hardest, and most honest, negatives
    for "which line does this annotation explain".
    """
    rng = random.Random(seed)
    song_lines = song_line_texts(catalog)
    negatives = []
    for song_id, line, fragment_text in zip(pairs["song_id"], pairs["line"], pairs["fragment_text"], strict=True):
        candidates = [text for text in song_lines[song_id] if text != line and text not in fragment_text]
        negatives.append(rng.choice(candidates) if candidates else "")
    return negatives


def dev_evaluator(dev: pd.DataFrame, catalog: Catalog, name: str = "dev"):
    """IR evaluator: dev annotations query every line of the dev songs that carry annotations."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    dev_songs = set(dev["song_id"])
    lines = catalog.lines[catalog.lines["song_id"].isin(dev_songs)]
    text_id = {text: f"t{i}" for i, text in enumerate(dict.fromkeys(lines["text"]))}
    line_text = dict(zip(lines["line_id"], lines["text"], strict=True))
    queries, relevant = {}, {}
    for pair_id, annotation, fragment_lines in zip(dev["pair_id"], dev["annotation"], dev["fragment_lines"],
                                                   strict=True):
        queries[f"q{pair_id}"] = annotation
        relevant[f"q{pair_id}"] = {text_id[line_text[line_id]] for line_id in fragment_lines}
    corpus = {identifier: text for text, identifier in text_id.items()}
    return InformationRetrievalEvaluator(queries, corpus, relevant, name=name, mrr_at_k=[10], ndcg_at_k=[10],
                                         accuracy_at_k=[1, 10], precision_recall_at_k=[10, 100], map_at_k=[100],
                                         batch_size=64, write_csv=False)


def visitor_dev_evaluator(path: str | Path, catalog: Catalog, song_split: dict[str, str], name: str = "dev_visitors"):
    """IR evaluator: visitor-style queries of dev songs query every line of the dev songs; relevant = the lines of
    the query's song (a query describes the song, so any of its lines surfacing first is the seed rule's evidence).

    None when the file has no dev-split song of this catalog.
    """
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    visitors = load_visitor_queries(path, catalog, split="dev", song_split=song_split)
    if not visitors:
        return None
    dev_songs = {song_id for song_id, split in song_split.items() if split == "dev"}
    lines = catalog.lines[catalog.lines["song_id"].isin(dev_songs) & (catalog.lines["text"].str.strip() != "")]
    text_id = {text: f"t{i}" for i, text in enumerate(dict.fromkeys(lines["text"]))}
    song_texts = lines.groupby("song_id")["text"].apply(lambda texts: {text_id[t] for t in texts}).to_dict()
    song_ids = catalog.songs["song_id"].tolist()
    queries = {f"v{i}": text for i, (text, _) in enumerate(visitors)}
    relevant = {f"v{i}": song_texts[song_ids[song]] for i, (_, song) in enumerate(visitors)}
    corpus = {identifier: text for text, identifier in text_id.items()}
    return InformationRetrievalEvaluator(queries, corpus, relevant, name=name, mrr_at_k=[10], ndcg_at_k=[10],
                                         accuracy_at_k=[1, 10], precision_recall_at_k=[10], map_at_k=[100],
                                         batch_size=64, write_csv=False)


def selection_evaluator(dev: pd.DataFrame, catalog: Catalog, song_split: dict[str, str],
                        visitor_file: str | Path | None):
    """What picks the best checkpoint: dev annotation retrieval alone, or — when dev-song visitor queries exist —
    the mean of its nDCG@10 and the visitor queries' (so a checkpoint is not kept for annotations alone)."""
    from sentence_transformers.sentence_transformer.evaluation import SequentialEvaluator

    annotations = dev_evaluator(dev, catalog)
    visitors = visitor_dev_evaluator(visitor_file, catalog, song_split) if visitor_file else None
    if visitors is None:
        return annotations, BEST_METRIC
    return SequentialEvaluator([annotations, visitors], main_score_function=lambda scores: sum(scores) / len(scores)), \
        "eval_sequential_score"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def short_view(annotation: str, *, max_words: int = 12) -> str:
    """A visitor-length view of an annotation: its first sentence of ≥ 4 words, cut to ``max_words``.

    Annotations run to paragraphs, visitor queries to a handful of words; training on both lengths keeps what the
    model learns from the long ones usable for the short ones.
    """
    sentences = [sentence for sentence in _SENTENCE_END.split(annotation) if len(sentence.split()) >= 4]
    words = (sentences[0] if sentences else annotation).split()[:max_words]
    return " ".join(words).rstrip(",;:")


def build_training_frame(train: pd.DataFrame, catalog: Catalog, *, hard_negatives: bool, seed: int,
                         short_views: bool = False) -> pd.DataFrame:
    """anchor (annotation), positive (line)[, negative (another line of the same song)] columns.

    With ``short_views``, every pair appears a second time with the annotation's short view as its anchor.
    """
    line_text = dict(zip(catalog.lines["line_id"], catalog.lines["text"], strict=True))
    frame = train.assign(fragment_text=train["fragment_lines"].map(lambda ids: " ".join(line_text[i] for i in ids)))
    columns = {"anchor": frame["annotation"].tolist(), "positive": frame["line"].tolist()}
    if hard_negatives:
        columns["negative"] = same_song_negatives(frame, catalog, seed=seed)
    result = pd.DataFrame(columns)
    if short_views:
        views = result.assign(anchor=result["anchor"].map(short_view))
        result = pd.concat([result, views[views["anchor"] != result["anchor"]]], ignore_index=True)
    if hard_negatives:
        result = result[result["negative"] != ""]
    return result.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def add_mined_negatives(frame: pd.DataFrame, model, corpus: list[str], *, seed: int, per_pair: int = 1,
                        range_max: int = 30) -> pd.DataFrame:
    """Add ``per_pair`` ``mined_negative_<i>`` columns: training lines the model ranks close to the anchor.

    Most wrong answers on held-out annotations are lines of *other* songs (the right song's other lines are a small
    share), so the negatives that teach most are those lines. No score margin: the base model often ranks the right
    line below dozens of others (that is what training fixes), and a margin would drop exactly those pairs; a line
    of another song is rarely the one an annotation explains (the same text is never a negative).
    """
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    pairs = frame[["anchor", "positive"]].drop_duplicates()
    mined = mine_hard_negatives(Dataset.from_pandas(pairs, preserve_index=False), model, corpus=corpus,
                                range_max=max(range_max, per_pair), num_negatives=per_pair,
                                sampling_strategy="random", output_format="n-tuple", batch_size=64, verbose=False)
    negatives = mined.to_pandas().drop_duplicates(["anchor", "positive"])
    negatives = negatives.rename(columns={f"negative_{i}": f"mined_negative_{i}" for i in range(1, per_pair + 1)})
    logger.info("mined %d negative(s) for %d of %d (annotation, line) pairs", per_pair, len(negatives), len(pairs))
    merged = frame.merge(negatives, on=["anchor", "positive"], how="inner")
    return merged.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def distillation_frame(texts: list[str], teacher, *, batch_size: int = 64) -> pd.DataFrame:
    """``text``/``label`` rows: texts with the base model's embeddings as targets (MSELoss keeps them close).

    The regulariser that keeps the fine-tuned model's geometry for texts the annotations never cover.
    """
    labels = teacher.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return pd.DataFrame({"text": texts, "label": [row.tolist() for row in labels]})


def distillation_texts(train: pd.DataFrame, catalog: Catalog, *, count: int, seed: int) -> list[str]:
    """Lines of the training songs (never dev/test songs) plus the short views: the texts to keep in place."""
    lines = catalog.lines[catalog.lines["song_id"].isin(set(train["song_id"]))]["text"]
    distinct = list(dict.fromkeys(lines))
    random.Random(seed).shuffle(distinct)
    views = list(dict.fromkeys(train["annotation"].map(short_view)))
    return (distinct[: max(count - len(views), 0)] + views)[:count]


def last_complete_checkpoint(directory: Path) -> str | None:
    """The checkpoint with the highest step whose trainer state was fully written (a kill mid-save leaves a
    folder without a readable ``trainer_state.json``; resuming from it would crash)."""
    complete = []
    for folder in directory.glob("checkpoint-*"):
        try:
            json.loads((folder / "trainer_state.json").read_text())
            complete.append((int(folder.name.split("-")[-1]), folder))
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", folder)
    return str(max(complete)[1]) if complete else None


def losses_for(model, names: list[str], args: argparse.Namespace) -> dict:
    """One loss per training dataset, each bound to ``model`` (an expert trained apart gets its own)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        EmbedDistillLoss,
        MultipleNegativesSymmetricRankingLoss,
    )

    from training.losses import LengthSortedMultipleNegativesRankingLoss

    losses = {}
    for name in names:
        if name == "pairs" and args.loss == "symmetric":
            losses[name] = MultipleNegativesSymmetricRankingLoss(model)
        elif name == "pairs" and uses_cached_loss(args):
            losses[name] = CachedMultipleNegativesRankingLoss(model, mini_batch_size=32)
        elif name == "distill":
            losses[name] = EmbedDistillLoss(model, distance_metric="cosine")
        else:  # MNRL, embedded in length-sorted chunks: same loss, a fraction of the padding
            losses[name] = LengthSortedMultipleNegativesRankingLoss(model)
    return losses


def uses_cached_loss(args: argparse.Namespace) -> bool:
    """Cached MNRL (GradCache) bounds memory by its mini-batch but embeds everything twice and is no faster than the
    length-sorted loss on CPU (benchmarks/train_step.py), so ``auto`` uses it from batch 128 (GPU memory) and
    ``--no-cached-loss`` keeps big batches plain where there is room."""
    return args.batch_size >= CACHED_LOSS_FROM_BATCH if args.cached_loss is None else args.cached_loss


def fit(model, datasets: dict, evaluator, best_metric: str, args: argparse.Namespace, checkpoints: Path) -> list:
    """Train ``model`` in place on ``datasets`` (one loss each); the best checkpoint by ``best_metric`` is restored
    at the end. Returns the trainer's log history."""
    import torch
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    losses = losses_for(model, list(datasets), args)
    if len(datasets) == 1:
        (train_dataset,), (loss,) = datasets.values(), losses.values()
    else:
        train_dataset, loss = DatasetDict(datasets), losses
    cuda = torch.cuda.is_available()
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=0.1,
        weight_decay=0.01,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=cuda and not torch.cuda.is_bf16_supported(),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=True,
        logging_steps=10,
        seed=args.seed,
        data_seed=args.seed,
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=train_dataset, loss=loss,
                                         evaluator=evaluator)
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(checkpoints) if args.resume else None)
    return trainer.state.log_history


def train_expert(base, datasets: dict, evaluator, best_metric: str, args: argparse.Namespace,
                 directory: Path) -> tuple[object, list]:
    """Train a copy of ``base`` on ``datasets`` into ``directory`` (``model/`` and its log): a member of a soup.

    A resumed run loads an expert that finished before the kill instead of training it again.
    """
    from sentence_transformers import SentenceTransformer

    model_dir, log_file = directory / "model", directory / "log_history.json"
    if args.resume and log_file.is_file() and (model_dir / "modules.json").is_file():
        logger.info("expert %s finished before: loading it from %s", directory.name, model_dir)
        return SentenceTransformer(str(model_dir), device=str(base.device)), json.loads(log_file.read_text())
    expert = copy.deepcopy(base)
    log_history = fit(expert, datasets, evaluator, best_metric, args, directory / "checkpoints")
    expert.save(str(model_dir))
    log_file.write_text(json.dumps(log_history, default=str))  # written last: it marks the expert as finished
    return expert, log_history


def average_weights(models: list):
    """A model soup: the element-wise mean of the floating-point weights of models fine-tuned from one base.

    The multi-task model trades some annotation retrieval for visitor queries; averaged with an expert trained on
    annotations alone, dev MRR@10 beat both members (0.523 vs 0.510 and 0.514); on test the gain was within noise.
    """
    import torch

    states = [model.state_dict() for model in models]
    keys = set(states[0])
    if any(set(state) != keys for state in states[1:]):
        raise RecommenderError("cannot average models with different architectures")
    merged = copy.deepcopy(models[0])
    with torch.no_grad():
        merged.load_state_dict({key: torch.stack([state[key].float() for state in states]).mean(0).to(value.dtype)
                                if value.is_floating_point() else value for key, value in states[0].items()})
    return merged


def train(args: argparse.Namespace) -> Path:
    """Run the training and save the best model to ``args.out / "model"``."""
    import torch
    from datasets import Dataset

    out = Path(args.out)
    catalog = Catalog.load(args.catalog)
    splits, song_split, report = split_pairs(catalog, seed=args.seed)
    write_splits(song_split, out / "splits.json", seed=args.seed)
    logger.info("pairs kept %d (filtered: %s); rows per split: %s", report.kept, report,
                {name: len(frame) for name, frame in splits.items()})
    if splits["train"].empty or splits["dev"].empty:
        raise RecommenderError("not enough annotated songs to train: the train or dev split is empty")

    torch.manual_seed(args.seed)
    encoder = load_encoder(args.base)
    # Train a copy: load_encoder caches one encoder per name for the process, and the evaluation and push gate
    # below must still see the untouched base under that name (training in place made "baseline" the new model).
    model = copy.deepcopy(encoder.model)
    try:
        model.max_seq_length = args.max_seq_length
    except AttributeError:  # e.g. StaticEmbedding models have no sequence length
        logger.info("%s has no max_seq_length to set", args.base)
    # Each repeat draws other same-song negatives, so a second pass over the annotations is not a plain copy.
    frame = pd.concat([build_training_frame(splits["train"], catalog, hard_negatives=args.hard_negatives,
                                            seed=args.seed + repeat, short_views=args.short_views)
                       for repeat in range(args.annotation_repeats)], ignore_index=True)
    if args.mined_negatives:
        train_songs = set(splits["train"]["song_id"])
        corpus = [text for text in dict.fromkeys(catalog.lines.loc[catalog.lines["song_id"].isin(train_songs), "text"])
                  if text.strip()]
        frame = add_mined_negatives(frame, model, corpus, seed=args.seed, per_pair=args.mined_negatives_per_pair)
    # Each dataset gets its own batches (no mixing of columns) and its own loss.
    datasets = {"pairs": Dataset.from_pandas(frame, preserve_index=False)}
    visitor_report = None
    if args.visitor_queries:
        visitors, visitor_report = visitor_pairs(args.visitor_queries, catalog, song_split)
        visitors = at_most_lines_per_query(visitors, args.visitor_lines_per_query, seed=args.seed)
        if args.visitor_verses:  # before the song lines: a query's verse is the one of its own chosen line
            visitors = with_verses(visitors, catalog)
        visitors = with_song_lines(visitors, catalog, per_query=args.visitor_song_lines, seed=args.seed)
        logger.info("visitor-style queries: %s", visitor_report)
        if not visitors.empty:
            datasets["visitors"] = Dataset.from_pandas(visitor_training_frame(visitors, seed=args.seed),
                                                       preserve_index=False)
    if args.distill_texts > 0:
        # Batches pulling training-song texts back to the base's vectors.
        texts = distillation_texts(splits["train"], catalog, count=args.distill_texts, seed=args.seed)
        datasets["distill"] = Dataset.from_pandas(distillation_frame(texts, model), preserve_index=False)
    evaluator, best_metric = selection_evaluator(splits["dev"], catalog, song_split, default_visitor_eval())
    base_dev = evaluator(model) if not args.resume else None
    if args.annotation_expert and "visitors" in datasets:
        # A soup of the multi-task model and an annotation-only expert, both trained from the base.
        regularisers = {name: data for name, data in datasets.items() if name not in ("pairs", "visitors")}
        members = {"joint": datasets, "annotations": {"pairs": datasets["pairs"], **regularisers}}
        trained = {name: train_expert(model, data, evaluator, best_metric, args, out / "experts" / name)
                   for name, data in members.items()}
        model = average_weights([expert for expert, _ in trained.values()])
        log_history = {name: history for name, (_, history) in trained.items()}
    else:
        log_history = fit(model, datasets, evaluator, best_metric, args, out / "checkpoints")
    final_dev = evaluator(model)
    model_dir = out / "model"
    model.save(str(model_dir))
    summary = {
        "base": args.base,
        "base_model_id": encoder.model_id,
        "train_rows": {name: len(dataset) for name, dataset in datasets.items()},
        "visitor_queries": visitor_report.__dict__ if visitor_report else None,
        "split_pairs": {name: int(frame_["pair_id"].nunique()) for name, frame_ in splits.items()},
        "split_songs": {name: int(frame_["song_id"].nunique()) for name, frame_ in splits.items()},
        "pair_filter": report.__dict__,
        "dev_base": base_dev,
        "dev_best": final_dev,
        "args": {key: value for key, value in vars(args).items() if key != "handler"},
        "soup": list(log_history) if isinstance(log_history, dict) else None,
        "log_history": log_history,
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    logger.info("saved the best model (dev MRR@10 %.4f) to %s", final_dev.get("dev_cosine_mrr@10", float("nan")),
                model_dir)
    result = None
    if not args.skip_eval:
        result = evaluate(args.catalog, [args.base, str(model_dir)], split="test", splits_file=str(out / "splits.json"),
                          mood_queries=args.mood_queries, bm25=False, visitor_queries=default_visitor_eval())
        write_report(result, out / "eval")
    write_model_card(model_dir, summary, result)
    if args.push_to_hub:
        push(model_dir, args)
    return model_dir


def push(model_dir: Path, args: argparse.Namespace) -> bool:
    """Push ``model_dir`` only if it beats the configured fine-tuned model (or the base); ``--force`` overrides.

    With ``--queries`` (default: training/eval/user_queries.jsonl when it exists) the gate also refuses a
    significant loss on the judged visitor queries, and refuses outright while pooled pairs are unjudged.
    """
    from huggingface_hub import HfApi

    from recommender.errors import ModelUnavailableError

    try:
        load_encoder(SETTINGS.finetuned_model)
        incumbent = SETTINGS.finetuned_model
    except ModelUnavailableError:
        incumbent = args.base
    try:
        result = evaluate(args.catalog, [incumbent, str(model_dir)], split="test",
                          splits_file=str(Path(args.out) / "splits.json"), bm25=False,
                          user_queries=args.queries, judgments=args.judgments, user_catalog_dir=args.user_catalog,
                          visitor_queries=default_visitor_eval())
    except UnjudgedPairsError as error:
        # The candidate surfaced songs nobody has judged: it cannot be compared yet, and --force does not guess.
        logger.error("refusing to push %s: %d pooled pairs of the user-style queries are unjudged; list them with "
                     "%s", model_dir, len(error.pairs), error.command)
        return False
    wins, reason = push_decision(result, candidate=str(model_dir), incumbent=incumbent)
    if not wins and not args.force:
        logger.error("refusing to push %s: %s", model_dir, reason)
        return False
    if not wins:
        logger.warning("FORCED PUSH of a model that does not win: %s", reason)
    api = HfApi()  # the token comes from HF_TOKEN in the environment only
    api.create_repo(args.push_to_hub, repo_type="model", exist_ok=True)
    commit = api.upload_folder(repo_id=args.push_to_hub, folder_path=str(model_dir), repo_type="model",
                               commit_message=f"Fine-tuned lyrics model: {reason}")
    logger.info("pushed %s to %s (%s)", model_dir, args.push_to_hub, reason)
    if args.dataset_repo:
        revision = publish_embeddings(model_dir, args, api=api)
        logger.info("published the catalog with embeddings of the new model to %s at %s; pin it as "
                    "dataset_revision and the model commit %s as the finetuned revision in space_config",
                    args.dataset_repo, revision, getattr(commit, "oid", commit))
    return True


def publish_embeddings(model_dir: Path, args: argparse.Namespace, *, api: object | None = None) -> str:
    """Rebuild the catalog's line embeddings with the pushed model and publish them beside the baseline's.

    The set is named after the configured fine-tuned model, so the Space finds it under that name; the loader
    checks its fingerprint against the model it downloads, so a set from other weights is never served.
    """
    import dataclasses

    from recommender.embeddings import build_embeddings
    from recommender.hub import publish

    catalog = Catalog.load(args.catalog)
    sets = []
    for name, encoder in ((SETTINGS.baseline_model, load_encoder(SETTINGS.baseline_model)),
                          (SETTINGS.finetuned_model, dataclasses.replace(load_encoder(str(model_dir)),
                                                                         name=SETTINGS.finetuned_model))):
        directory = Path(args.out) / "publish-embeddings" / name
        build_embeddings(catalog, encoder, directory, show_progress_bar=True)
        sets.append(directory)
    return publish(args.catalog, sets, repo=args.dataset_repo, api=api)


def at_least_one(value: str) -> int:
    """argparse type: an integer ≥ 1 (mining zero negatives would give MNRL a column-less frame)."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", required=True, help="ingested catalog directory (with pairs)")
    parser.add_argument("--base", default=SETTINGS.baseline_model, help="base model: configured name, Hub id, dir")
    parser.add_argument("--out", required=True, help="output directory (model/, checkpoints/, splits.json)")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--loss", choices=("mnrl", "symmetric"), default="mnrl",
                        help="MultipleNegativesRankingLoss, or its symmetric variant (also line → annotation)")
    parser.add_argument("--cached-loss", action=argparse.BooleanOptionalAction, default=None,
                        help="CachedMNRL for the annotation pairs (default: from batch 128; it only saves memory)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--short-views", action=argparse.BooleanOptionalAction, default=False,
                        help="also train on each annotation's first sentence (visitor-length anchors)")
    parser.add_argument("--distill-texts", type=int, default=0, metavar="N",
                        help="keep N training-song lines and short views at the base model's vectors (0 = off)")
    parser.add_argument("--visitor-queries", metavar="JSONL",
                        default=str(DEFAULT_VISITOR_QUERIES) if DEFAULT_VISITOR_QUERIES.is_file() else None,
                        help="visitor-style training queries of train-split songs (default: "
                             "training/data/visitor_queries.jsonl when it exists)")
    parser.add_argument("--annotation-repeats", type=int, default=1, metavar="N",
                        help="pass over the annotation pairs N times per epoch (each with fresh hard negatives)")
    parser.add_argument("--visitor-song-lines", type=int, default=0, metavar="N",
                        help="also pair each visitor query with N other lines of its song (song-level positives)")
    parser.add_argument("--visitor-verses", action=argparse.BooleanOptionalAction, default=False,
                        help="also pair each visitor query with the verse (verse_lines lines, one text) of its line")
    parser.add_argument("--visitor-lines-per-query", type=int, default=0, metavar="N",
                        help="train on at most N of the lines a writer chose for each visitor query (0 = all)")
    parser.add_argument("--no-visitor-queries", dest="visitor_queries", action="store_const", const=None,
                        help="train on annotations only")
    parser.add_argument("--mined-negatives", action=argparse.BooleanOptionalAction, default=True,
                        help="also give each annotation pair a line of another training song mined with the base model")
    parser.add_argument("--mined-negatives-per-pair", type=at_least_one, default=1, metavar="N",
                        help="how many mined lines each annotation pair gets as negatives")
    parser.add_argument("--no-hard-negatives", dest="hard_negatives", action="store_false",
                        help="train on (annotation, line) pairs only, without same-song negatives")
    parser.add_argument("--annotation-expert", action=argparse.BooleanOptionalAction, default=False,
                        help="also train an annotation-only expert and average its weights with the multi-task "
                             "model (a model soup): higher dev MRR@10, about 10 more minutes on a 2-core CPU")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--push-to-hub", metavar="REPO", help="push the model and rebuilt embeddings if it wins")
    parser.add_argument("--dataset-repo", default=SETTINGS.dataset_repo, metavar="OWNER/NAME",
                        help="after a push, rebuild the catalog embeddings with the new model and publish them here "
                             "(default: space_config's dataset_repo; '' to skip)")
    parser.add_argument("--force", action="store_true", help="push even if the evaluation says it does not win")
    parser.add_argument("--skip-eval", action="store_true", help="no held-out test evaluation after training")
    parser.add_argument("--mood-queries", help="judged mood queries (JSONL) to include in the test evaluation")
    parser.add_argument("--queries", default=str(DEFAULT_USER_QUERIES) if DEFAULT_USER_QUERIES.is_file() else None,
                        help="judged user-style queries the push gate checks (default: "
                             "training/eval/user_queries.jsonl when it exists)")
    parser.add_argument("--judgments", help="judgments of --queries (default: judgments.jsonl next to it)")
    parser.add_argument("--user-catalog", help="catalog searched by --queries (default: --catalog)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        train(args)
    except RecommenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
