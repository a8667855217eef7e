"""Per-knee and per-cohort reports."""
