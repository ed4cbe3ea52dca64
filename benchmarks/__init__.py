"""Benchmarks, run as scripts (`uv run python benchmarks/run.py`); a package so tests can import their helpers."""
