"""Test helpers that are also useful to demos and benchmarks (fixture writers)."""
