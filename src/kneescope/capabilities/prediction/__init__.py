"""The prediction capability (issue 17)."""
