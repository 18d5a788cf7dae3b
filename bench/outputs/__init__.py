"""Benchmark of writing the DICOM outputs (nstage/outputs)."""
