"""The oa_score capability: a holistic, calibrated OA score per knee and visit fitted on a
whole cohort's results (the ``oa_score`` cohort-level step and ``kneescope score``)."""
