"""Command-line interface (Typer + rich). The only layer that prints."""
