"""Training-step speed on CPU: the memory allocator and the loss variant, side by side in one run.

    python benchmarks/train_step.py                 # 8 timed steps per variant, writes its RESULTS.md section
    python benchmarks/train_step.py --steps 4 --negatives 1

An annotation batch of the CPU recipe is 64 annotations (cut at 128 tokens) plus 64 × (1 + negatives) lyric lines;
the synthetic batch draws their lengths from the shared songsdata's training pairs (annotations: 10/25/50/75/90th
percentiles 23/35/55/81/115 tokens; lines: mostly 6–20 tokens, a few up to 50).
Several of its activations (attention scores 64×12×128×128 floats, the feed-forward's 64×128×1536) are over
glibc's 32 MB mmap ceiling, so glibc maps and zero-fills them afresh on every step and unmaps them on free; on a
virtual machine those page faults can be costly. Each variant runs in a fresh process:

* MultipleNegativesRankingLoss over the whole batch, glibc malloc (what ``training.finetune`` does by default);
* CachedMultipleNegativesRankingLoss with mini-batches of 32 (each activation under the ceiling, one extra forward);
* LengthSortedMultipleNegativesRankingLoss (training/losses.py): the same loss, every text embedded in
  length-sorted chunks of 64 cut to their longest text instead of padded to the column's longest;
* all again with jemalloc preloaded (``LD_PRELOAD``), when the library is installed (Debian: libjemalloc2).

Prints seconds per step (median), minor page faults per step, the process's peak resident memory and the ratio to
the first variant. Results on the 2-core machine: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_note, markdown_table, set_threads, write_section

JEMALLOC_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                       "/usr/lib64/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2")
LOSSES = ("mnrl", "cached-mnrl", "mnrl-length-sorted")
ANNOTATION_TOKEN_PERCENTILES = ((0.0, 8), (0.1, 23), (0.25, 35), (0.5, 55), (0.75, 81), (0.9, 115), (1.0, 128))


def jemalloc_path() -> str | None:
    return next((path for path in JEMALLOC_CANDIDATES if Path(path).is_file()), None)


def run_steps(loss_name: str, *, steps: int, batch_size: int, negatives: int, anchor_tokens: int = 128) -> dict:
    """Time ``steps`` optimiser steps of the packaged MiniLM on a synthetic annotation batch (after one warm-up)."""
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    from recommender.encoders import load_encoder

    torch.manual_seed(0)
    model = load_encoder("baseline").model
    model.max_seq_length = anchor_tokens
    model.train()
    from training.losses import LengthSortedMultipleNegativesRankingLoss

    loss = {"mnrl": lambda: MultipleNegativesRankingLoss(model),
            "cached-mnrl": lambda: CachedMultipleNegativesRankingLoss(model, mini_batch_size=32),
            "mnrl-length-sorted": lambda: LengthSortedMultipleNegativesRankingLoss(model)}[loss_name]()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    words = ["the", "river", "keeps", "the", "secrets", "of", "the", "town", "where", "my", "father", "worked",
             "the", "night", "shift"]

    rng = random.Random(0)

    def annotation_length() -> int:
        """A length drawn from the annotations' token-length distribution (linear between percentiles)."""
        u = rng.random()
        (p0, t0), (p1, t1) = next((low, high) for low, high in itertools.pairwise(ANNOTATION_TOKEN_PERCENTILES)
                                  if low[0] <= u <= high[0])
        return round(t0 + (t1 - t0) * (u - p0) / (p1 - p0))

    def line_length() -> int:
        return rng.choice(range(6, 21)) if rng.random() < 0.95 else rng.choice(range(21, 51))

    def texts(lengths: list[int], offset: int) -> list[str]:
        return [" ".join(words[(i + j + offset) % len(words)] for j in range(length)) + f" {i}"
                for i, length in enumerate(lengths)]

    columns = [texts([annotation_length() for _ in range(batch_size)], 0)] + \
        [texts([line_length() for _ in range(batch_size)], 1 + n) for n in range(1 + negatives)]
    features = [model.tokenize(column) for column in columns]
    timings, faults = [], []
    for step in range(steps + 1):
        before_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        optimizer.zero_grad()
        value = loss([dict(feature) for feature in features], None)
        value.backward()
        optimizer.step()
        if step:  # the first step allocates the optimizer state: a warm-up, not counted
            timings.append(time.perf_counter() - start)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before_faults)
    timings.sort()
    return {"seconds_per_step": timings[len(timings) // 2], "minor_faults_per_step": sum(faults) / len(faults),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def child_command(loss_name: str, args: argparse.Namespace) -> list[str]:
    return [sys.executable, __file__, "--child", loss_name, "--steps", str(args.steps), "--batch-size",
            str(args.batch_size), "--negatives", str(args.negatives), "--threads", str(args.threads)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--negatives", type=int, default=2, help="negatives per anchor (the recipe: 2)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", choices=LOSSES, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    args.threads = threads
    if args.child:
        print(json.dumps(run_steps(args.child, steps=args.steps, batch_size=args.batch_size,
                                   negatives=args.negatives)))
        return 0

    note = machine_note(threads)
    started = time.perf_counter()
    jemalloc = jemalloc_path()
    allocators = [("glibc", None)] + ([("jemalloc", jemalloc)] if jemalloc else [])
    rows, reference = [], None
    for allocator, library in allocators:
        for loss_name in LOSSES:
            env = dict(os.environ, HF_HUB_OFFLINE="1", **({"LD_PRELOAD": library} if library else {}))
            result = subprocess.run(child_command(loss_name, args), env=env, capture_output=True, text=True,
                                    check=True)
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            reference = reference or measured["seconds_per_step"]
            rows.append([loss_name, allocator, f"{measured['seconds_per_step']:.2f}",
                         f"{measured['minor_faults_per_step']:,.0f}", f"{measured['peak_rss_gib']:.1f}",
                         f"{reference / measured['seconds_per_step']:.2f}×"])
            print(" | ".join(rows[-1]), flush=True)
    if not jemalloc:
        print("jemalloc not found (Debian: apt-get install libjemalloc2): only glibc measured")
    table = markdown_table(["loss", "allocator", "s / step (median)", "minor page faults / step",
                            "peak RSS (GiB)", "speed vs first row"], rows)
    body = (f"## Training step (`benchmarks/train_step.py`)\n\n{note} · whole run "
            f"{time.perf_counter() - started:.0f} s.\n\nOne optimiser step of the packaged MiniLM on a batch shaped "
            f"like the recipe's annotation batches: {args.batch_size} annotations of 8–128 tokens (median 55) + "
            f"{args.batch_size} × (1 + {args.negatives}) lines of 6–50 tokens; median of {args.steps} steps after a "
            f"warm-up, each variant in a fresh process.\n\n{table}\n")
    print(body)
    if not args.no_write:
        write_section("train-step", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
