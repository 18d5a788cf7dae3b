"""Benchmarks of the station analysis (nstage/analysis): the tumour side found on the images."""
