"""Benchmark utilities: the measurement harness, workload inputs and reference runners."""
