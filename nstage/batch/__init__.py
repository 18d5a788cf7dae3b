"""`nstage batch`: many studies through the `nstage run` pipeline, on the cohort executor.

STUDIES_ROOT -> one `nstage run` per study folder (studies.py) on local worker processes or a Dask
cluster (worker.py), each into OUT_ROOT/<study> exactly as `nstage run` writes it; the state of each
study kept in OUT_ROOT/.nstage_batch/ (records.py) so that a second run skips finished studies;
OUT_ROOT/summary.csv (table.py) and, with the generator's truth, the cohort metrics (metrics.py).
cohort.py chains them.
"""
