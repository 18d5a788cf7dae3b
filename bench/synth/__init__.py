"""Benchmarks of the synthetic generator (nstage/synth): calibration, speed, node gallery."""
