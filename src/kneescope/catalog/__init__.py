"""The SQL catalog of a cohort (SQLAlchemy) and its importers."""
