"""Benchmarks for opportunity-sync: ``python -m bench`` (see bench/README.md)."""
