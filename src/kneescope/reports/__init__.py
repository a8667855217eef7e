"""Reports a researcher looks at: static HTML pages of a run, per knee and visit and per cohort.

``kneescope report`` writes them (no server: they open from disk). Jinja2 templates in
``templates/``, a style sheet and the QC review script in ``static/``; figures are matplotlib
PNG files beside the pages. This layer reads run results and files through the lower layers and
sits just below the CLI (docs/ARCHITECTURE.md).
"""
