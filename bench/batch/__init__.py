"""Benchmark of nstage batch's throughput (nstage/batch)."""
