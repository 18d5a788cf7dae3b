"""Benchmarks of node reading (nstage/analysis/nodes.py) against the generator's truth, its time, and the real CT."""
