"""Statistics for cohort outcomes: pure numpy/scipy (+ statsmodels where a model exists there).

No files, no catalog, no torch: arrays in, numbers out. The capability packages
(``longitudinal``, ``prediction``, ``trial``, ``pain``) turn results tables into these arrays.
"""
