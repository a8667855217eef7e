"""A tiny capability plugged into kneescope from outside it: the volume of one label.

The worked example of docs/ARCHITECTURE.md ("Adding a capability"): a frozen config
(:mod:`.config`), result columns with units (:mod:`.results`) and a step (:mod:`.step`),
registered in this distribution's ``pyproject.toml``::

    [project.entry-points."kneescope.steps"]
    label_volume = "kneescope_test_steps.label_volume.step:LabelVolume"

It trains nothing, so it has no model-file kind and no training task.
"""
