"""Cohort runs: manifest, per-item state and executors (in-process, Dask, Slurm/PBS)."""
