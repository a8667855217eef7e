"""The radiographs capability: knee films as cohort items (localisation, joint space width)
and the ``kneescope xray`` pipeline's steps."""
