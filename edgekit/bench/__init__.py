"""Benchmark harness: each variant timed in a fresh child process (``edgekit.bench.worker``)."""
