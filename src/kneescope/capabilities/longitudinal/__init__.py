"""The longitudinal capability (issue 17)."""
