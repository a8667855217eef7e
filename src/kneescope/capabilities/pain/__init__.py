"""The pain capability (issue 17)."""
