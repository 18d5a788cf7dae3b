"""Benchmark of the routing node's throughput (nstage/route)."""
