"""Benchmarks of loading a study (nstage/ingest): decoding time, and decisions under each transfer syntax."""
