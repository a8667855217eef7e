"""The trial capability (issue 17)."""
