"""Benchmarks of the atlas registration (nstage/stationmap): accuracy, speed, quality rules, cost to the N stage; device/: the GPU check."""
