"""Rescans of one synthetic knee: the same anatomy and disease, a new scan.

A rescan is what a test-retest precision study acquires: the knee is taken out of the coil
and repositioned, so the slice stack meets it at a new obliquity and field-of-view offset, and
the image gets new noise and a new bias field. Everything that describes the knee itself
(anatomy, cartilage, lesions, menisci, osteophytes) is unchanged, and so is its truth.

Example::

    import numpy as np
    from kneescope.synth.knee import render_knee
    from kneescope.synth.params import FULL, sample_knee_params
    from kneescope.synth.rescan import rescan_params

    knee = sample_knee_params(np.random.default_rng(0), klg=2)
    scans = [render_knee(rescan_params(knee, r), FULL) for r in (1, 2, 3, 4)]
"""

from __future__ import annotations

import numpy as np

from kneescope.errors import InputError
from kneescope.synth.params import KneeParams, sample_scan

RESCAN_STREAM = 0x2E5C
"""Last word of the seed of a rescan's random stream (kept apart from every other stream)."""

SCAN_FIELDS = ("obliquity_deg", "offset_mm", "noise_sigma", "bias_strength", "intensity_seed")
"""The :class:`KneeParams` fields a rescan draws anew (those of
:func:`~kneescope.synth.params.sample_scan`)."""


def rescan_params(params: KneeParams, rescan: int) -> KneeParams:
    """``params`` with a new scan: repositioned (obliquity and offset), new noise level,
    bias field and noise seed, drawn as :func:`~kneescope.synth.params.sample_scan` draws
    them (obliquity and offset N(0, 3) deg / mm per axis, clipped at +-8).

    Args:
        params: the knee as first scanned.
        rescan: 0 returns ``params`` unchanged (the original scan); 1, 2, ... are the
            rescans, each deterministic in (``params.intensity_seed``, ``rescan``) and
            different from the others.

    Raises:
        InputError: ``rescan`` is negative.
    """
    if rescan < 0:
        raise InputError(f"rescan number must be 0 (the original) or more, got {rescan}")
    if rescan == 0:
        return params
    rng = np.random.default_rng([params.intensity_seed, rescan, RESCAN_STREAM])
    scan = sample_scan(rng)
    return params.model_copy(update={k: scan[k] for k in SCAN_FIELDS})
