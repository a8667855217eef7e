"""Knee MRI segmentation: training task, cohort steps, result columns and model-file kind.

- :mod:`.config`: options of the ``segment`` step; :mod:`.training_config`: of training;
- :mod:`.results`: the ``segment`` step's result columns;
- model-file kind ``"segmentation"``: :mod:`kneescope.inference.segmentation_model`
  (``KIND``, ``ModelSpec``; inference reads it, :mod:`.task` writes it);
- :mod:`.step`: the ``segment`` step (entry point ``segment`` in ``kneescope.steps``);
- :mod:`.task`: the training task (entry point ``segmentation`` in ``kneescope.tasks``).

Nothing is imported here: importing a step must not pull in torch before it is used.
"""
