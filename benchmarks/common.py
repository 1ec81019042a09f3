"""Helpers shared by the benchmark scripts: threads, timing statistics, machine notes, RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Written by `benchmarks/search.py`, `benchmarks/build.py`, `benchmarks/query.py` and `benchmarks/train_step.py`; "
    "each script rewrites its own section. Re-run them to refresh the numbers on your machine.\n"
)


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads in torch and faiss (default: every core of the machine)."""
    import torch

    threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    return threads


def ms_stats(seconds: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000
    return float(np.median(values)), float(np.percentile(values, 95))


def rss_anon_bytes() -> int:
    """Anonymous resident memory of this process (heap, not file-backed mappings), from /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_note(threads: int) -> str:
    """One paragraph: when, where and under what load the numbers were taken."""
    import torch

    try:
        load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    versions = [f"Python {platform.python_version()}", f"torch {torch.__version__}", f"numpy {np.__version__}"]
    for name in ("faiss", "sentence_transformers"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except ImportError:
            pass
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} · {cpu_model()} · {os.cpu_count()} cores, "
            f"{threads} threads used · {load} at start · {', '.join(versions)}")


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, path: Path = RESULTS) -> Path:
    """Replace (or append) the ``name`` section of RESULTS.md, leaving the other scripts' sections alone."""
    text = path.read_text() if path.is_file() else RESULTS_HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
