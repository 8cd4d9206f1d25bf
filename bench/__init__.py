"""Benchmarks of montero and the stack: `python bench/run.py` (see docs/benchmarks.md)."""
