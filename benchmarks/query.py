"""End-to-end query benchmark: warm ``Recommender.search_text`` latency and cold start to the first answer.

1. Warm: ``Recommender.search_text`` p50/p95 over ~50 short mood queries on an ingested catalog (default: the real
   songsdata one at /tmp/songsdata_cat), split into query encoding and search + ranking + JSON.
2. Cold start: a fresh ``python`` process that imports the library, opens the embedded default catalog with the
   baseline model and answers one ``search_text`` — time from process start to the answer. Once with the
   default catalog's embeddings already cached (a restart), once with an empty cache (a first start, which ingests
   the catalog and builds its embeddings).
3. App: ``python app.py`` launched → first ``gradio_client`` answer from ``/search_text`` (skipped with a note if
   the app or gradio_client is unavailable).

Rewrites the ``query`` section of benchmarks/RESULTS.md.

    python benchmarks/query.py
    python benchmarks/query.py --catalog DIR --embeddings DIR --no-app
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO_ROOT, machine_note, markdown_table, ms_stats, set_threads, write_section
from benchmarks.search import MOOD_QUERIES

COLD_START_SCRIPT = """
import json, sys, time
started = float(sys.argv[1])
t0 = time.time()
from recommender.service import Recommender
t1 = time.time()
recommender = Recommender.open(model="baseline")
t2 = time.time()
result = recommender.search_text("driving alone at night after a breakup")
t3 = time.time()
print("COLD " + json.dumps({"interpreter_s": t0 - started, "import_s": t1 - t0, "open_s": t2 - t1,
                            "first_query_s": t3 - t2, "total_s": t3 - started, "results": len(result["results"])}))
"""


def child_env(cache_dir: str | None = None, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", TRANSFORMERS_VERBOSITY="error",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache_dir:
        env["LYRICS_CACHE_DIR"] = cache_dir
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def cold_start(cache_dir: str, threads: int) -> dict:
    started = time.time()
    done = subprocess.run([sys.executable, "-c", COLD_START_SCRIPT, repr(started)], cwd=REPO_ROOT, text=True,
                          capture_output=True, env=child_env(cache_dir, threads), timeout=900)
    wall = time.time() - started
    line = next((text for text in done.stdout.splitlines() if text.startswith("COLD ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"cold start failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(line[5:])
    report["wall_s"] = wall
    return report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_first_answer(cache_dir: str, threads: int, timeout_s: float = 300.0) -> dict:
    """Launch ``python app.py`` and time it to the first ``/search_text`` answer through gradio_client."""
    from gradio_client import Client

    port = free_port()
    env = child_env(cache_dir, threads)
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))
    with tempfile.TemporaryFile(mode="w+") as log:
        return _serve_and_ask(Client, port, env, log, timeout_s)


def _serve_and_ask(client_class, port: int, env: dict[str, str], log, timeout_s: float) -> dict:
    started = time.time()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        client, connected = None, None
        while client is None:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app.py exited with {process.returncode}: {log.read()[-2000:]}")
            if time.time() - started > timeout_s:
                raise TimeoutError(f"app.py did not serve within {timeout_s:.0f} s")
            try:
                client = client_class(f"http://127.0.0.1:{port}/", verbose=False)
                connected = time.time() - started
            except Exception:  # not up yet: any connection error means "poll again"
                time.sleep(0.25)
        result = client.predict("driving alone at night after a breakup", "baseline", 0.0, 1.0, 10,
                                api_name="/search_text")
        answered = time.time() - started
        results = result.get("results", []) if isinstance(result, dict) else result
        return {"connected_s": connected, "first_answer_s": answered, "results": len(results)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def warm_latency(catalog_dir: Path, embeddings_dir: Path, queries: int) -> tuple[list[list[object]], str]:
    from recommender.service import Recommender

    recommender = Recommender.open(catalog_dir=catalog_dir, embeddings_dir=embeddings_dir, model="baseline")
    texts = (MOOD_QUERIES * (queries // len(MOOD_QUERIES) + 1))[:queries]
    for text in texts[:3]:
        recommender.search_text(text)
    total, encode, search = [], [], []
    for text in texts:
        tick = time.perf_counter()
        recommender.search_text(text)
        total.append(time.perf_counter() - tick)
    for text in texts:
        tick = time.perf_counter()
        vector = recommender.encoder.encode_queries([text])[0]
        encode.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        recommender.search_vector(vector, query=text, allowed_songs=None, top_n=10)
        search.append(time.perf_counter() - tick)
    rows = []
    for label, seconds in (("search_text (end to end)", total), ("· query encoding", encode),
                           ("· search + rank_songs + JSON", search)):
        median, p95 = ms_stats(seconds)
        rows.append([label, f"{median:.1f}", f"{p95:.1f}", len(seconds)])
    describe = (f"{len(recommender.catalog.songs):,} songs, {len(recommender.index):,} lines; index: "
                f"{recommender.index.describe() if hasattr(recommender.index, 'describe') else 'exact'}")
    return rows, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("/tmp/songsdata_cat"))
    parser.add_argument("--embeddings", type=Path, default=None,
                        help="embedding set of --catalog (default: CATALOG/embeddings/baseline)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--no-app", action="store_true", help="skip the app.py launch test")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = set_threads(args.threads)
    note = machine_note(threads)
    print(note, flush=True)
    parts = [f"## Query path (`benchmarks/query.py`, {threads} thread{'s' if threads > 1 else ''})\n", note + "\n"]

    embeddings_dir = args.embeddings or args.catalog / "embeddings" / "baseline"
    if (args.catalog / "songs.parquet").is_file() and (embeddings_dir / "manifest.json").is_file():
        rows, describe = warm_latency(args.catalog, embeddings_dir, args.queries)
        table = markdown_table(["warm, real songsdata catalog", "p50 ms", "p95 ms", "queries"], rows)
        print(describe)
        print(table, flush=True)
        parts += [f"### Warm queries\n\n{describe}; baseline model, full valence range, top 10.\n", table + "\n"]
    else:
        message = f"Warm queries skipped: no catalog at {args.catalog} or no embedding set at {embeddings_dir}."
        print(message)
        parts.append(message + "\n")

    cold_rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as cache_dir:
        first = cold_start(cache_dir, threads)  # empty cache: ingests the default catalog, builds its embeddings
        restart = cold_start(cache_dir, threads)  # cache present: what every later start costs
        for label, report in (("first start (empty cache: ingest + embed the default catalog)", first),
                              ("restart (default catalog's embeddings cached)", restart)):
            cold_rows.append([label, f"{report['interpreter_s']:.2f}", f"{report['import_s']:.2f}",
                              f"{report['open_s']:.2f}", f"{report['first_query_s']:.2f}", f"{report['total_s']:.2f}"])
        if not args.no_app:
            try:
                app = app_first_answer(cache_dir, threads)
                cold_rows.append(["`python app.py` → first gradio_client /search_text answer", "—", "—",
                                  f"(serving after {app['connected_s']:.2f})", "—", f"{app['first_answer_s']:.2f}"])
            except Exception as error:  # report any failure of the app test, never crash the run
                cold_rows.append([f"`python app.py`: not measured ({type(error).__name__}: {str(error)[:160]})",
                                  "—", "—", "—", "—", "—"])
    table = markdown_table(["cold start to first search_text answer (embedded default catalog, baseline)",
                            "interpreter s", "imports s", "Recommender.open s", "first query s", "total s"],
                           cold_rows)
    print(table, flush=True)
    parts += ["### Cold start\n\nA fresh process: time from its start to the first answer (the app row: from "
              "launching `python app.py` to the first answer over HTTP).\n", table + "\n"]
    if not args.no_write:
        print(f"wrote {write_section(f'query-threads-{threads}', chr(10).join(parts))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
