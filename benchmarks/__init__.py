"""Benchmarks (not tests): run one as ``python -m benchmarks.<name>`` from the repository root."""
