"""Search benchmark: the seed path of the original study vs every LineIndex backend, side by side.

Per setting (synthetic clustered 768-d unit vectors at each ``--sizes``, then the real songsdata catalog embedded
with the packaged model) and per backend: median / p95 ms per query for search + the seed ranking (``rank_songs``),
speed-up over the seed path, line recall@100 and the share of queries whose song top-10 is identical, both against
the exact float32 backend, and the resident bytes per line. Prints the tables and rewrites the ``search`` section
of benchmarks/RESULTS.md.

    python benchmarks/search.py                                    # 100k and 1M synthetic + /tmp/songsdata_cat
    python benchmarks/search.py --sizes 100000 --queries 20        # quicker
    python benchmarks/search.py --catalog DIR --embeddings DIR     # another ingested catalog + its embedding set

The seed path is ``util.semantic_search(query, corpus, score_function=util.cos_sim, top_k=100)`` over a float32
torch matrix of the index rows (cos_sim re-normalizes the corpus on every query, as the original study did), then
``rank_songs`` on its hits.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import machine_note, markdown_table, ms_stats, rss_anon_bytes, set_threads, write_section
from recommender.index import LineIndex
from recommender.ranking import rank_songs, songs_in_valence_range

K = 100
TOP_N = 10
VALENCE_RANGE = (0.45, 0.55)
MOOD_QUERIES = [
    "driving alone at night after a breakup", "dancing in the summer rain", "missing home while living far away",
    "a quiet morning coffee before work", "standing up for what is right", "falling in love for the first time",
    "heartbreak and crying in the dark", "partying all night with friends", "losing someone you love to death",
    "feeling lonely in a crowded city", "road trip with the windows down", "getting over an ex and moving on",
    "hope after a long hard winter", "anger at a lying friend", "growing up and leaving childhood behind",
    "a mother's love for her child", "money, fame and fast cars", "praying for strength in hard times",
    "sunset on the beach with my lover", "working hard to make it out of the neighborhood",
    "regret for the things I never said", "jealousy when she dances with someone else", "celebrating a victory",
    "nostalgia for the old days in my hometown", "feeling free on the open road", "a broken promise",
    "staying strong when everyone doubts you", "kissing in the rain", "war and the soldiers who never came back",
    "being drunk at the bar at closing time", "the stars at night make me think of you",
    "waiting by the phone for you to call", "revenge on those who hurt me", "summer love that ended too soon",
    "feeling invincible and young", "depression and not wanting to get out of bed", "wedding day vows",
    "cheating and betrayal", "a letter to my younger self", "dreaming of a better life",
    "the city lights and late night trains", "friendship that lasts forever", "rain on the window and memories",
    "fighting for freedom", "a lullaby for a sleeping baby", "learning to love yourself",
    "running away together", "an empty house after the divorce", "dancing like nobody is watching",
    "the end of the world",
]


class SyntheticTexts:
    """Stands in for a list of line texts without a million Python strings."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, position: int) -> str:
        return f"synthetic line {position}"


def clustered_corpus(n: int, dim: int, queries: int, seed: int = 0,
                     chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in topics → clusters (lognormal sizes) → lines at varied spread, and queries near them.

    A query is a corpus line pulled towards its topic plus noise (0.8·line + 0.6·topic + 1.1·noise), so its
    cosine profile matches real mood queries against MiniLM lyric lines (median top-1 ≈ 0.68, 10th ≈ 0.53,
    100th ≈ 0.47, 400th ≈ 0.38, 1000th ≈ 0.30; real: 0.68, 0.55, 0.45, 0.37, 0.32): the top 100 spread over
    several clusters, as they do for real queries, which is what makes IVF recall hard.
    """
    rng = np.random.default_rng(seed)
    n_topics, n_clusters = 64, max(16, n // 250)
    topics = rng.standard_normal((n_topics, dim), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    cluster_topic = rng.integers(0, n_topics, n_clusters)
    centres = topics[cluster_topic] + rng.standard_normal((n_clusters, dim), dtype=np.float32) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, n_clusters)
    weights /= weights.sum()
    row_cluster = rng.choice(n_clusters, n, p=weights)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        spread = rng.uniform(0.6, 1.5, (size, 1)).astype(np.float32) / np.sqrt(dim)
        block = centres[row_cluster[start:start + size]]
        block += spread * rng.standard_normal((size, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:start + size] = block
    sources = rng.integers(0, n, queries)
    query_vectors = (0.8 * vectors[sources] + 0.6 * topics[cluster_topic[row_cluster[sources]]]
                     + 1.1 * rng.standard_normal((queries, dim), dtype=np.float32) / np.sqrt(dim))
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    return vectors, query_vectors.astype(np.float32)


@dataclass
class Setting:
    """One corpus to search: rows → songs/texts, the distinct-text vectors, queries and the song valences."""

    name: str
    row_song: np.ndarray
    row_text: np.ndarray
    texts: object
    vectors: np.ndarray
    queries: np.ndarray
    valence: np.ndarray
    threshold: float
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """Timings and answers of one search path over the queries."""

    label: str
    seconds: list[float]
    rows: list[np.ndarray]
    songs: list[list[int]]
    build_s: float | None = None
    bytes_per_line: float | None = None
    rss_per_line: float | None = None


def timed_queries(label: str, search: Callable[[np.ndarray], tuple[np.ndarray, list[int]]], queries: np.ndarray,
                  *, budget_s: float | None = None, warmup: int = 2) -> Run:
    for query in queries[:warmup]:
        search(query)
    run = Run(label, [], [], [])
    started = time.perf_counter()
    for query in queries:
        tick = time.perf_counter()
        rows, songs = search(query)
        run.seconds.append(time.perf_counter() - tick)
        run.rows.append(rows)
        run.songs.append(songs)
        if budget_s is not None and time.perf_counter() - started > budget_s and len(run.seconds) >= 5:
            break
    return run


def index_search(index: LineIndex, threshold: float, allowed: np.ndarray | None):
    def search(query: np.ndarray) -> tuple[np.ndarray, list[int]]:
        rows, scores = index.search(query, allowed_songs=allowed, k=K)
        hits = rank_songs(rows, scores, index.row_song, threshold=threshold, top_n=TOP_N)
        return rows, [hit.song_index for hit in hits]

    return search


def seed_search(corpus: torch.Tensor, row_song: np.ndarray, threshold: float):
    from sentence_transformers import util

    def search(query: np.ndarray) -> tuple[np.ndarray, list[int]]:
        hits = util.semantic_search(torch.from_numpy(query[None, :]), corpus, score_function=util.cos_sim,
                                    top_k=K)[0]
        rows = np.array([hit["corpus_id"] for hit in hits], dtype=np.int64)
        scores = np.array([hit["score"] for hit in hits], dtype=np.float32)
        ranked = rank_songs(rows, scores, row_song, threshold=threshold, top_n=TOP_N)
        return rows, [hit.song_index for hit in ranked]

    return search


def build_index(setting: Setting, backend: str) -> tuple[LineIndex, float, float]:
    gc.collect()
    before = rss_anon_bytes()
    started = time.perf_counter()
    index = LineIndex(setting.row_song, setting.row_text, setting.texts, setting.vectors, backend=backend)
    seconds = time.perf_counter() - started
    gc.collect()
    return index, seconds, (rss_anon_bytes() - before) / max(len(index), 1)


def compare(run: Run, truth: Run) -> tuple[float, float]:
    """Line recall@100 and the share of identical song top-10s, against the exact runs of the same queries."""
    recalls, same = [], []
    for rows, songs, want_rows, want_songs in zip(run.rows, run.songs, truth.rows, truth.songs, strict=False):
        recalls.append(len(set(rows.tolist()) & set(want_rows.tolist())) / max(len(want_rows), 1))
        same.append(songs == want_songs)
    return float(np.mean(recalls)), float(np.mean(same))


def run_setting(setting: Setting, args: argparse.Namespace) -> tuple[str, list[list[object]]]:
    print(f"\n== {setting.name}: {len(setting.row_song):,} lines, {len(setting.vectors):,} vectors × "
          f"{setting.vectors.shape[1]}, {len(setting.queries)} queries", flush=True)
    allowed = songs_in_valence_range(setting.valence, *VALENCE_RANGE)
    results: list[tuple[Run, Run]] = []  # (run, its exact reference)

    exact, build_s, rss = build_index(setting, "exact")
    truth = timed_queries("exact", index_search(exact, setting.threshold, None), setting.queries)
    truth.build_s, truth.bytes_per_line = build_s, exact.nbytes_per_row()
    truth.rss_per_line = rss
    truth_filtered = timed_queries("exact", index_search(exact, setting.threshold, allowed), setting.queries)
    truth_filtered.build_s, truth_filtered.bytes_per_line = build_s, truth.bytes_per_line
    print(f"  exact: {ms_stats(truth.seconds)[0]:.1f} ms", flush=True)

    one_text_per_row = np.array_equal(setting.row_text, np.arange(len(setting.vectors)))
    corpus = torch.from_numpy(setting.vectors if one_text_per_row else setting.vectors[setting.row_text])
    seed = timed_queries("seed: semantic_search + rank_songs", seed_search(corpus, setting.row_song,
                                                                        setting.threshold),
                         setting.queries, budget_s=args.seed_budget_s, warmup=1)
    seed.bytes_per_line = corpus.shape[1] * 4 + 8
    del corpus
    results.append((seed, truth))
    print(f"  seed: {ms_stats(seed.seconds)[0]:.1f} ms over {len(seed.seconds)} queries", flush=True)
    results.append((truth, truth))
    del exact
    filtered = [(truth_filtered, truth_filtered)]
    for backend in ("int8", "ivf"):
        index, build_s, rss = build_index(setting, backend)
        for nprobe in (args.nprobe if backend == "ivf" else [None]):
            label = backend if nprobe is None else f"ivf (nprobe {nprobe})"
            if nprobe is not None:
                index.nprobe = nprobe
            run = timed_queries(label, index_search(index, setting.threshold, None), setting.queries)
            run.build_s, run.bytes_per_line, run.rss_per_line = build_s, index.nbytes_per_row(), rss
            results.append((run, truth))
            masked = timed_queries(label, index_search(index, setting.threshold, allowed), setting.queries)
            masked.build_s, masked.bytes_per_line = build_s, run.bytes_per_line
            filtered.append((masked, truth_filtered))
            print(f"  {label}: {ms_stats(run.seconds)[0]:.1f} ms; {index.describe()}", flush=True)
        del index
        gc.collect()

    seed_median = ms_stats(seed.seconds)[0]
    rows = []
    share = float(allowed[setting.row_song].mean())
    for group, suffix in ((results, ""), (filtered, f" · valence {VALENCE_RANGE[0]}–{VALENCE_RANGE[1]}")):
        for run, reference in group:
            median, p95 = ms_stats(run.seconds)
            recall, same = compare(run, reference)
            rows.append([
                run.label + suffix, f"{run.build_s:.1f}" if run.build_s is not None else "—",
                f"{median:.2f}", f"{p95:.2f}", f"{seed_median / median:.1f}×", f"{recall:.4f}", f"{same:.0%}",
                f"{run.bytes_per_line:.0f}" if run.bytes_per_line else "—",
                f"{run.rss_per_line:.0f}" if run.rss_per_line is not None else "—", len(run.seconds),
            ])
    notes = [*setting.notes, f"valence {VALENCE_RANGE[0]}–{VALENCE_RANGE[1]} keeps {share:.1%} of the lines"]
    headers = ["path", "build s", "median ms", "p95 ms", "speed-up vs seed", "line recall@100", "song top-10 same",
               "resident B/line", "RssAnon Δ B/line", "queries"]
    table = markdown_table(headers, rows)
    print(table, flush=True)
    return f"### {setting.name}\n\n" + "\n".join(f"- {note}" for note in notes) + "\n\n" + table + "\n", rows


def synthetic_setting(size: int, dim: int, queries: int) -> Setting:
    started = time.perf_counter()
    vectors, queries_vectors = clustered_corpus(size, dim, queries)
    lines_per_song = 30
    rng = np.random.default_rng(2)
    n_songs = max(1, size // lines_per_song)
    row_song = np.sort(rng.integers(0, n_songs, size))
    return Setting(
        name=f"synthetic {size:,} lines × {dim}-d (clustered)",
        row_song=row_song, row_text=np.arange(size), texts=SyntheticTexts(size), vectors=vectors,
        queries=queries_vectors, valence=rng.uniform(0, 1, n_songs), threshold=0.6,
        notes=[f"{n_songs:,} songs of ~{lines_per_song} lines; every line text distinct; queries are corpus lines "
               f"pulled towards their topic plus noise (cosine profile of real mood queries); data generated in "
               f"{time.perf_counter() - started:.0f} s"],
    )


def real_setting(catalog_dir: Path, embeddings_dir: Path, queries: int) -> Setting | None:
    if not (catalog_dir / "songs.parquet").is_file() or not (embeddings_dir / "manifest.json").is_file():
        print(f"\n== real songsdata: skipped — no catalog at {catalog_dir} or no embedding set at {embeddings_dir}.\n"
              "   Build them with: python -m recommender ingest ../shared/datasets/songsdata --out /tmp/bench_cat && "
              "python -m recommender build --catalog /tmp/bench_cat --model baseline "
              "--out /tmp/bench_cat/embeddings/baseline")
        return None
    from recommender.catalog import Catalog
    from recommender.embeddings import load_embeddings
    from recommender.encoders import load_encoder

    catalog = Catalog.load(catalog_dir)
    encoder = load_encoder("baseline")
    embeddings = load_embeddings(embeddings_dir, catalog=catalog, encoder=encoder)
    index = LineIndex.build(catalog, embeddings, backend="exact")
    texts = (MOOD_QUERIES * (queries // len(MOOD_QUERIES) + 1))[:queries]
    query_vectors = encoder.encode_queries(texts)
    return Setting(
        name=f"real songsdata ({len(catalog.songs):,} songs, {len(index):,} lines, "
             f"{len(embeddings.texts):,} distinct texts × {embeddings.dimension}-d, {encoder.model_id})",
        row_song=index.row_song, row_text=index.row_text, texts=embeddings.texts, vectors=embeddings.vectors,
        queries=query_vectors, valence=catalog.songs["valence"].to_numpy(dtype=np.float64),
        threshold=float(embeddings.manifest.get("threshold", encoder.threshold)),
        notes=[f"{len(texts)} short mood queries encoded with the same model (encoding not timed here: see "
               "query.py); the seed corpus is the index rows (the original study embedded all "
               f"{len(catalog.lines):,} raw lines, repeated choruses included, so its scan was larger still)"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed-budget-s", type=float, default=60.0,
                        help="stop timing the (slow) seed path after this many seconds, once 5 queries ran")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[32, 128], help="ivf probe counts to time")
    parser.add_argument("--catalog", type=Path, default=Path("/tmp/songsdata_cat"))
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="embedding set of --catalog (default: CATALOG/embeddings/baseline)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    note = machine_note(threads)
    print(note)
    started = time.perf_counter()
    sections = []
    for size in args.sizes:
        setting = synthetic_setting(size, args.dim, args.queries)
        sections.append(run_setting(setting, args)[0])
        del setting
        gc.collect()
    real = real_setting(args.catalog, args.embeddings or args.catalog / "embeddings" / "baseline", args.queries)
    if real is None:
        sections.append(f"### real songsdata\n\nSkipped: no ingested catalog + embedding set at {args.catalog}.\n")
    else:
        sections.append(run_setting(real, args)[0])
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    body = (
        f"## Search (`benchmarks/search.py`, {threads} thread{'s' if threads > 1 else ''})\n\n"
        f"{note} · whole run {total:.0f} s.\n\n"
        "Per query: `index.search(k=100)` + `rank_songs` (the seed ranking); the seed path is "
        "`util.semantic_search(query, corpus, score_function=util.cos_sim, top_k=100)` over a float32 torch matrix "
        "+ `rank_songs`. Recall and song top-10 are against the exact float32 backend on the same queries (with the "
        "same valence range for the filtered rows). Resident B/line = `LineIndex.nbytes_per_row()` (vectors or "
        "codes, row maps, lists; the int8/ivf float32 rescoring vectors are a memory-mapped file, not counted; "
        "line texts are the catalog's, not counted); for the seed path, its float32 matrix (cos_sim also makes a "
        "normalized copy of it on every query). RssAnon Δ = anonymous resident memory measured around the index "
        "build (the exact index shares the caller's array, so it shows only its row maps).\n\n"
        + "\n".join(sections)
    )
    if not args.no_write:
        print(f"wrote {write_section(f'search-threads-{threads}', body)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
