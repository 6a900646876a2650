"""Benchmarks that compare methods side by side in one run and report ratios."""
