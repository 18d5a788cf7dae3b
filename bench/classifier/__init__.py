"""Benchmarks of the station classifier: held-out cohorts, operating points, variants, the ceiling, experiments."""
