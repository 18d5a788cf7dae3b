"""Benchmarks of whole studies (nstage/pipeline.py): per-stage times, cold and warm, and the baselines through the pipeline."""
