"""Embedding build benchmark: our build path vs seed-style encoding, same model, on the real songsdata lines.

* ours — ``recommender.embeddings.build_embeddings``: each distinct line text encoded once (a chorus repeated in a
  song, or a line shared by songs, costs one encoding), batch ``SETTINGS.encode_batch_size``, written as a set.
* seed — what the original study did: ``model.encode`` over every raw catalog line, no dedup, default batch 32.

Reports catalog lines covered per second for both, the ratio, and checks the vectors agree (cosine ≥ 0.999 for
every line). ``--variants`` also times our path at larger batch sizes and a shorter ``max_seq_length``, to show
what else would speed builds up. Rewrites the ``build`` section of benchmarks/RESULTS.md.

    python benchmarks/build.py                      # 200 songs of /tmp/songsdata_cat (ingested if missing)
    python benchmarks/build.py --limit 600 --variants
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.common import REPO_ROOT, machine_note, markdown_table, set_threads, write_section
from recommender.catalog import Catalog

SEED_BATCH_SIZE = 32
MIN_COSINE = 0.999


def load_catalog(catalog_dir: Path, songsdata: Path) -> Catalog | None:
    if (catalog_dir / "songs.parquet").is_file():
        return Catalog.load(catalog_dir)
    if not songsdata.is_dir():
        return None
    from recommender.ingest import ingest_sources

    print(f"ingesting {songsdata} into {catalog_dir}", flush=True)
    catalog = ingest_sources([songsdata])
    catalog.save(catalog_dir)
    return catalog


def subset(catalog: Catalog, limit: int, seed: int = 0) -> Catalog:
    """``limit`` songs drawn at random (seeded), with their lines and pairs."""
    if limit <= 0 or limit >= len(catalog.songs):
        return catalog
    rng = np.random.default_rng(seed)
    songs = catalog.songs.iloc[np.sort(rng.choice(len(catalog.songs), limit, replace=False))]
    keep = set(songs["song_id"])
    lines = catalog.lines[catalog.lines["song_id"].isin(keep)]
    pairs = catalog.pairs[catalog.pairs["song_id"].isin(keep)]
    return Catalog(songs.reset_index(drop=True), lines.reset_index(drop=True), pairs.reset_index(drop=True))


def seed_encode(model, texts: list[str]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=SEED_BATCH_SIZE, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32), time.perf_counter() - started


def our_build(catalog: Catalog, encoder, batch_size: int | None = None) -> tuple[dict[str, np.ndarray], float, int]:
    from recommender.embeddings import build_embeddings

    with tempfile.TemporaryDirectory(prefix="bench-build-") as out:
        started = time.perf_counter()
        embedding_set, _ = build_embeddings(catalog, encoder, Path(out) / "set", batch_size=batch_size,
                                            show_progress_bar=False)
        seconds = time.perf_counter() - started
    return dict(zip(embedding_set.texts, embedding_set.vectors, strict=True)), seconds, len(embedding_set.texts)


def agreement(texts: list[str], seed_vectors: np.ndarray, ours: dict[str, np.ndarray]) -> float:
    """The lowest cosine between the seed's vector of a line and ours for the same text."""
    seed_unit = seed_vectors / np.linalg.norm(seed_vectors, axis=1, keepdims=True)
    our_vectors = np.stack([ours[text] for text in texts])
    return float(np.min(np.sum(seed_unit * our_vectors, axis=1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("/tmp/songsdata_cat"))
    parser.add_argument("--songsdata", type=Path, default=REPO_ROOT.parent / "shared" / "datasets" / "songsdata")
    parser.add_argument("--limit", type=int, default=200, help="songs to encode (0 = all)")
    parser.add_argument("--variants", action="store_true",
                        help="also time our path at batch 256 and under bfloat16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    note = machine_note(threads)
    print(note)
    full = load_catalog(args.catalog, args.songsdata)
    if full is None:
        print(f"skipped: no catalog at {args.catalog} and no songsdata at {args.songsdata}")
        return 0
    from recommender.encoders import load_encoder
    from space_config import SETTINGS

    catalog = subset(full, args.limit)
    encoder = load_encoder("baseline")
    model = encoder.model
    texts = catalog.lines["text"].tolist()
    distinct = len(set(texts))
    print(f"{len(catalog.songs)} songs, {len(texts)} lines, {distinct} distinct texts "
          f"({len(texts) / distinct:.2f} lines per text); model {encoder.model_id}", flush=True)
    model.encode(texts[:64], batch_size=SEED_BATCH_SIZE)  # warm-up: first-call allocations

    seed_vectors, seed_s = seed_encode(model, texts)
    print(f"seed: {seed_s:.1f} s", flush=True)
    ours, ours_s, encoded = our_build(catalog, encoder)
    print(f"ours: {ours_s:.1f} s", flush=True)
    cosine = agreement(texts, seed_vectors, ours)
    rows = [
        ["seed: model.encode(every line, batch 32)", len(texts), f"{seed_s:.1f}", f"{len(texts) / seed_s:.1f}",
         "1.00×", "—"],
        [f"ours: build_embeddings (distinct texts, batch {SETTINGS.encode_batch_size})", encoded, f"{ours_s:.1f}",
         f"{len(texts) / ours_s:.1f}", f"{seed_s / ours_s:.2f}×", f"{cosine:.6f}"],
    ]
    if args.variants:
        import torch

        variant, seconds, _ = our_build(catalog, encoder, batch_size=256)
        rows.append(["ours, batch 256", encoded, f"{seconds:.1f}", f"{len(texts) / seconds:.1f}",
                     f"{seed_s / seconds:.2f}×", f"{agreement(texts, seed_vectors, variant):.6f}"])
        print(f"ours batch 256: {seconds:.1f} s", flush=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            variant, seconds, _ = our_build(catalog, encoder)
        rows.append([f"ours, batch {SETTINGS.encode_batch_size}, torch.autocast(cpu, bfloat16)", encoded,
                     f"{seconds:.1f}", f"{len(texts) / seconds:.1f}", f"{seed_s / seconds:.2f}×",
                     f"{agreement(texts, seed_vectors, variant):.6f}"])
        print(f"ours bf16: {seconds:.1f} s", flush=True)
    headers = ["path", "texts encoded", "seconds", "catalog lines/s", "speed-up", "min cosine vs seed"]
    table = markdown_table(headers, rows)
    print(table)
    ok = cosine >= MIN_COSINE
    print(f"vectors agree (min cosine {cosine:.6f} ≥ {MIN_COSINE}): {ok}; speed-up {seed_s / ours_s:.2f}×")
    body = (
        f"## Embedding build (`benchmarks/build.py`, {threads} thread{'s' if threads > 1 else ''})\n\n"
        f"{note}\n\n"
        f"{len(catalog.songs)} songs drawn at random from the songsdata catalog: {len(texts):,} lines, {distinct:,} "
        f"distinct texts ({len(texts) / distinct:.2f} lines per text). Lines/s counts catalog lines covered per "
        "second (ours encodes each distinct text once and covers every line with it; its time includes writing "
        "the set). Min cosine compares every line's seed vector with ours for the same text.\n\n"
        + table + "\n"
    )
    if not args.no_write:
        print(f"wrote {write_section(f'build-threads-{threads}', body)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
