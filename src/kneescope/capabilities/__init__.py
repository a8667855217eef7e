"""Capability packages: each owns its config, result columns, model-file kind, steps and tasks."""
