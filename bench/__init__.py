"""Benchmarks of framepack-api: they print figures (ratios against a baseline measured in the same
run), never pass/fail."""
