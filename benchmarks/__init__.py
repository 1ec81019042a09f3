"""Benchmarks: search, embedding builds and the end-to-end query path (see benchmarks/RESULTS.md)."""
