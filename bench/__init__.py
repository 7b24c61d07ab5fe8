"""Benchmarks, run by hand (`make bench`); figures are ratios against a baseline in the same run."""
