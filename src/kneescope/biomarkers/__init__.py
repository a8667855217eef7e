"""Image biomarkers from knee label maps (numpy/scipy only)."""
