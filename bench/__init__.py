"""Benchmarks, printed as tables, never asserted: ``python -m bench NAME``."""
