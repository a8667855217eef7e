"""Synthetic knee cohorts with known truth, written in the OAI layout."""
