"""Load test of the Gradio app over loopback: many gradio_client clients at once, then a burst past the queue.

    python benchmarks/load.py                                   # 200 requests from 20 clients, then the burst
    python benchmarks/load.py --requests 40 --clients 8 --timeout 60
    LYRICS_ARTIFACTS_DIR=artifacts python benchmarks/load.py    # image requests too, if a CLIP model loads there
    python benchmarks/load.py --url http://127.0.0.1:7860/      # an app you started yourself (loopback only)

1. Starts the app in-process on 127.0.0.1 (a free port) unless ``--url`` names a running one — never a remote host.
2. Warms the models up (one text and, when a CLIP model is available, one image search; not counted).
3. Sends ``--requests`` searches from ``--clients`` concurrent gradio_client clients (one thread each): text queries
   with varied valence ranges and sizes, and every third request an image search when a CLIP model is available
   (``--image-model auto`` picks the first available one from ``/models``). Each request waits at most ``--timeout``
   seconds; the whole phase stops dispatching after ``--max-seconds``. With more clients than the app has running
   slots and queue places (2 + 16), a request can meet the queue-full answer even at this steady pace: it is then
   retried after a short pause, like a real client would (counted as "busy answers retried").
4. Prints how many were served, the failures (exceptions, a wrong JSON shape, or still busy after the retries),
   p50 / p95 latency (from the first attempt, so retries count in it).
5. Sends a burst of ``--burst`` simultaneous requests, more than the queue holds (``app.QUEUE_MAX_SIZE`` waiting
   plus ``app.CONCURRENCY_LIMIT`` running): the excess must get gradio's clear "Queue is full" answer (HTTP 503 →
   ``gradio_client`` ``QueueError``), never hang or crash.
6. Checks the server recovers: a normal query succeeds within ``--timeout`` seconds after the burst.

Exit status 0 when nothing failed, the burst was answered (served or busy, nothing else) and the server recovered.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

QUERIES = [
    "driving alone at night after a breakup", "dancing in the summer rain", "missing home while living far away",
    "a quiet morning coffee before work", "standing up for what is right", "falling in love for the first time",
    "feeling lonely in a crowded city", "road trip with the windows down", "hope after a long hard winter",
    "nostalgia for the old days in my hometown", "a broken promise", "celebrating a victory with friends",
]
VALENCE_RANGES = [(0.0, 1.0), (0.0, 0.5), (0.5, 1.0), (0.2, 0.8)]
# Long (but valid) queries make each burst request cost a little, so the burst outruns the two workers.
BURST_QUERY = ("slow dance alone in an empty kitchen at midnight " * 60)[:1900]
RESULT_KEYS = {"query", "model", "ranking", "results"}
# More clients than running slots + queue places (2 + 16) may meet a busy answer even at a steady pace: like a real
# client, a measured request then tries again after a short pause; only what still fails counts as a failure.
BUSY_RETRIES = 5
BUSY_BACKOFF_S = 0.2


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(registry=None) -> Iterator[str]:
    """The real app on 127.0.0.1 (a free port), optionally with another model registry; closed afterwards."""
    import app

    previous = app.REGISTRY
    if registry is not None:
        app.REGISTRY = registry
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **app.LAUNCH_KWARGS)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()
        app.REGISTRY = previous


def make_pictures(directory: Path) -> list[Path]:
    """A few small generated pictures (gradients and noise, PNG and JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pictures = []
    for index in range(4):
        gradient = np.linspace(0, 255, 64, dtype=np.uint8)
        array = np.stack([np.tile(gradient, (48, 1)), rng.integers(0, 255, (48, 64), dtype=np.uint8),
                          np.full((48, 64), 40 * index, dtype=np.uint8)], axis=-1)
        path = directory / f"picture-{index}.{'png' if index % 2 else 'jpg'}"
        Image.fromarray(array).save(path)
        pictures.append(path)
    return pictures


def new_client(url: str, timeout: float):
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"timeout": timeout})


def is_busy(error: BaseException) -> bool:
    """gradio's queue-full answer (HTTP 503 → ``gradio_client`` ``QueueError("Queue is full! …")``)."""
    return "queue is full" in str(error).lower()


def call(client, args: tuple, api_name: str, timeout: float):
    """One request, waiting at most ``timeout`` seconds for its answer."""
    job = client.submit(*args, api_name=api_name)
    try:
        return job.result(timeout=timeout)
    except TimeoutError:
        job.cancel()
        raise


def available_clip_model(url: str, timeout: float) -> str | None:
    client = new_client(url, timeout)
    models = client.predict(api_name="/models")
    return next((model["name"] for model in models if model["kind"] == "clip" and model["available"]), None)


def request_args(index: int, image_model: str | None, pictures: list[Path]) -> tuple[str, tuple, str]:
    """``(kind, arguments, api_name)`` of request number ``index``: every third one an image when possible."""
    low, high = VALENCE_RANGES[index % len(VALENCE_RANGES)]
    top_n = 3 + index % 8
    if image_model and pictures and index % 3 == 2:
        from gradio_client import handle_file

        picture = pictures[index % len(pictures)]
        return "image", (handle_file(str(picture)), image_model, low, high, top_n), "/search_image"
    return "text", (QUERIES[index % len(QUERIES)], "baseline", low, high, top_n), "/search_text"


def check_shape(result: object, top_n: int) -> str | None:
    if not isinstance(result, dict) or set(result) != RESULT_KEYS:
        return f"unexpected answer {str(result)[:120]}"
    songs = result["results"]
    if not isinstance(songs, list) or len(songs) > top_n or [song.get("rank") for song in songs] != list(
            range(1, len(songs) + 1)):
        return "results out of shape"
    return None


def run_requests(url: str, *, requests: int, clients: int, timeout: float, image_model: str | None,
                 pictures: list[Path], max_seconds: float) -> dict:
    """``requests`` searches from ``clients`` threads, each with its own gradio_client Client."""
    lock = threading.Lock()
    next_index = iter(range(requests))
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"text": 0, "image": 0, "failures": 0, "not_sent": 0, "busy_retries": 0}
    deadline = time.monotonic() + max_seconds
    pool = [new_client(url, timeout) for _ in range(clients)]

    def worker(client) -> None:
        while True:
            with lock:
                index = next(next_index, None)
                if index is None:
                    return
                if time.monotonic() > deadline:
                    counts["not_sent"] += 1
                    continue
            kind, args, api_name = request_args(index, image_model, pictures)
            started = time.perf_counter()
            for attempt in range(BUSY_RETRIES + 1):
                try:
                    problem = check_shape(call(client, args, api_name, timeout), args[-1])
                except Exception as error:  # anything but a busy answer is a failure: normal requests must succeed
                    problem = f"{type(error).__name__}: {error}"
                    if is_busy(error) and attempt < BUSY_RETRIES:
                        with lock:
                            counts["busy_retries"] += 1
                        time.sleep(BUSY_BACKOFF_S * (attempt + 1))  # what the message asks: "Please try again"
                        continue
                break
            elapsed = time.perf_counter() - started
            with lock:
                counts[kind] += 1
                if problem is None:
                    latencies.append(elapsed)
                else:
                    counts["failures"] += 1
                    if len(errors) < 10:
                        errors.append(f"{kind} #{index}: {problem}"[:300])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(client,), name=f"load-client-{i}", daemon=True)
               for i, client in enumerate(pool)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + timeout + 30)
    wall = time.perf_counter() - started
    values = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": requests, "clients": clients, "served": len(latencies), "failures": counts["failures"],
        "not_sent": counts["not_sent"], "busy_retries": counts["busy_retries"], "text_requests": counts["text"],
        "image_requests": counts["image"],
        "p50_ms": round(float(np.percentile(values, 50)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1),
        "max_ms": round(float(values.max()), 1), "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2) if wall else None, "errors": errors,
    }


def run_burst(url: str, *, size: int, clients: int, timeout: float) -> dict:
    """``size`` requests released at once (a barrier) from a pool of ``clients`` Clients."""
    pool = [new_client(url, timeout) for _ in range(max(1, min(clients, size)))]
    barrier = threading.Barrier(size)
    lock = threading.Lock()
    outcome = {"burst": size, "burst_served": 0, "busy": 0, "busy_message": None, "burst_errors": []}

    def one(index: int) -> None:
        client = pool[index % len(pool)]
        try:
            barrier.wait(timeout)
            call(client, (BURST_QUERY, "baseline", 0.0, 1.0, 5), "/search_text", timeout)
        except Exception as error:
            message = str(error)
            with lock:
                if is_busy(error):
                    outcome["busy"] += 1
                    outcome["busy_message"] = outcome["busy_message"] or f"{type(error).__name__}: {message}"
                elif len(outcome["burst_errors"]) < 10:
                    outcome["burst_errors"].append(f"{type(error).__name__}: {message}"[:300])
            return
        with lock:
            outcome["burst_served"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,), name=f"burst-{i}", daemon=True) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 3 + 30)
    outcome["burst_wall_s"] = round(time.perf_counter() - started, 2)
    return outcome


def wait_for_recovery(url: str, timeout: float) -> tuple[bool, float, str | None]:
    """Whether a normal query succeeds within ``timeout`` seconds; the seconds it took; the last error."""
    client = new_client(url, timeout)
    started = time.perf_counter()
    last_error = None
    while time.perf_counter() - started < timeout:
        try:
            result = call(client, (QUERIES[0], "baseline", 0.0, 1.0, 3), "/search_text", timeout)
            if check_shape(result, 3) is None and result["results"]:
                return True, round(time.perf_counter() - started, 2), None
        except Exception as error:
            last_error = f"{type(error).__name__}: {error}"
        time.sleep(0.25)
    return False, round(time.perf_counter() - started, 2), last_error


def default_burst() -> int:
    import app

    return 3 * (app.QUEUE_MAX_SIZE + app.CONCURRENCY_LIMIT)


def run_benchmark(url: str, *, requests: int = 200, clients: int = 20, timeout: float = 60.0,
                  image_model: str | None = "auto", burst: int | None = None, max_seconds: float = 600.0) -> dict:
    """Warm-up, the measured requests, the burst and the recovery check against the app at ``url`` (loopback).

    ``image_model``: a CLIP model name, ``"auto"`` (the first available one from ``/models``) or None (text only).
    ``burst``: simultaneous requests of the burst (None: three times queue size + running slots; 0: no burst).
    """
    if not is_loopback_url(url):
        raise ValueError(f"load tests only run against a loopback address, not {url}")
    if image_model == "auto":
        image_model = available_clip_model(url, timeout)
    with tempfile.TemporaryDirectory(prefix="load-pictures-") as directory:
        pictures = make_pictures(Path(directory)) if image_model else []
        warm = new_client(url, max(timeout, 600.0))  # the first search may build embeddings
        call(warm, (QUERIES[0], "baseline", 0.0, 1.0, 3), "/search_text", max(timeout, 600.0))
        if image_model:
            from gradio_client import handle_file

            call(warm, (handle_file(str(pictures[0])), image_model, 0.0, 1.0, 3), "/search_image",
                 max(timeout, 600.0))
        stats = {"url": url, "image_model": image_model}
        stats.update(run_requests(url, requests=requests, clients=clients, timeout=timeout, image_model=image_model,
                                  pictures=pictures, max_seconds=max_seconds))
    size = default_burst() if burst is None else burst
    if size > 0:
        stats.update(run_burst(url, size=size, clients=clients, timeout=timeout))
        recovered, seconds, error = wait_for_recovery(url, timeout)
        stats.update({"recovered": recovered, "recovery_s": seconds, "recovery_error": error})
    return stats


def report(stats: dict) -> str:
    lines = [
        f"requests: {stats['requests']} from {stats['clients']} clients ({stats['text_requests']} text, "
        f"{stats['image_requests']} image{' with ' + stats['image_model'] if stats['image_model'] else ''})",
        f"served: {stats['served']}   failures: {stats['failures']}   not sent (time limit): {stats['not_sent']}   "
        f"busy answers retried: {stats['busy_retries']}",
        f"latency: p50 {stats['p50_ms']:.0f} ms   p95 {stats['p95_ms']:.0f} ms   max {stats['max_ms']:.0f} ms   "
        f"({stats['throughput_rps']} requests/s over {stats['wall_s']} s)",
    ]
    lines += [f"  error: {error}" for error in stats["errors"]]
    if "burst" in stats:
        lines += [
            f"burst: {stats['burst']} at once → {stats['burst_served']} served, {stats['busy']} busy answers"
            f"{' (' + stats['busy_message'] + ')' if stats['busy_message'] else ''}, "
            f"{len(stats['burst_errors'])} other errors, {stats['burst_wall_s']} s",
            *[f"  burst error: {error}" for error in stats["burst_errors"]],
            f"recovery: {'a normal query succeeded' if stats['recovered'] else 'FAILED'} after "
            f"{stats['recovery_s']} s" + (f" ({stats['recovery_error']})" if stats.get("recovery_error") else ""),
        ]
    return "\n".join(lines)


def succeeded(stats: dict) -> bool:
    return (stats["failures"] == 0 and stats["not_sent"] == 0
            and ("burst" not in stats or (not stats["burst_errors"] and stats["recovered"])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured requests (default 200)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent gradio_client clients (default 20)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take (default 60)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop dispatching measured requests after this many seconds (default 600)")
    parser.add_argument("--burst", type=int, default=None,
                        help="simultaneous requests of the overload burst (default 3 × (queue + running); 0: none)")
    parser.add_argument("--image-model", default="auto",
                        help="CLIP model for image requests: auto (first available), none, or a name")
    parser.add_argument("--url", help="a running app on a loopback address (default: start one in-process)")
    parser.add_argument("--json", action="store_true", help="print the statistics as one JSON object too")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.clients < 1 or args.timeout <= 0:
        parser.error("--requests, --clients and --timeout must be positive")
    if args.url and not is_loopback_url(args.url):
        parser.error(f"--url must be a loopback address (127.0.0.1, ::1, localhost), not {args.url}")
    image_model = None if args.image_model.lower() == "none" else args.image_model
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(serve())
        stats = run_benchmark(url, requests=args.requests, clients=args.clients, timeout=args.timeout,
                              image_model=image_model, burst=args.burst, max_seconds=args.max_seconds)
    print(report(stats))
    if args.json:
        print(json.dumps(stats))
    return 0 if succeeded(stats) else 1


if __name__ == "__main__":
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(main())
