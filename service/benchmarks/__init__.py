"""Benchmarks: each compares the project against a named anchor, measured in the same run."""
