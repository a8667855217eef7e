"""Knee biomarkers as a cohort capability: the ``measure`` step and its result columns.

- :mod:`.config`: options of the ``measure`` step (``side`` + :class:`MeasureConfig`);
- :mod:`.results`: every biomarker column with its unit;
- :mod:`.step`: the ``measure`` step (entry point ``measure`` in ``kneescope.steps``).

The measurements themselves are :func:`kneescope.biomarkers.measure_knee` (numpy/scipy only);
this package adapts them to cohort runs. It uses no model file.
"""
