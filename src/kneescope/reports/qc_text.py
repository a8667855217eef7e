"""Every QC flag of the ``measure`` step explained in words (what it means, what to do).

The flags are the results table's ``qc_*`` columns (:mod:`kneescope.biomarkers.qc`);
:func:`flag_sentence` turns one raised flag (its name without ``qc_``) and the step's own
reason text into a sentence for the knee and cohort pages.
"""

from __future__ import annotations

_STRUCTURE_WORDS = {
    "femur": "femur",
    "tibia": "tibia",
    "patella": "patella",
    "femoral_cartilage": "femoral cartilage",
    "medial_tibial_cartilage": "medial tibial cartilage",
    "lateral_tibial_cartilage": "lateral tibial cartilage",
    "patellar_cartilage": "patellar cartilage",
    "medial_meniscus": "medial meniscus",
    "lateral_meniscus": "lateral meniscus",
    "femoral": "femoral cartilage plate",
    "medial_tibial": "medial tibial cartilage plate",
    "lateral_tibial": "lateral tibial cartilage plate",
    "patellar": "patellar cartilage plate",
}

_PREFIXED = (
    (
        "missing_",
        "The segmentation has no {what}: every biomarker of it is missing. Check the image "
        "(field of view, contrast) and the segmentation; re-segment or reject the knee.",
    ),
    (
        "extra_components_",
        "The {what} is in more than one piece (stray islands besides the main one): the "
        "segmentation leaks or breaks up there, and its volumes and thickness may be off. Look "
        "at the overlays; re-segment if the pieces are not anatomy.",
    ),
    (
        "implausible_volume_",
        "The {what} has a volume outside the plausible range for a knee: the segmentation "
        "likely over- or under-segments it. Check the overlays before using its values.",
    ),
    (
        "implausible_thickness_",
        "The {what} has a mean thickness outside the plausible range: cartilage is "
        "mislabelled or largely missing there. Check the overlays and the thickness map.",
    ),
    (
        "cartilage_off_bone_",
        "The {what} does not lie on its bone: labels are swapped or misplaced. Its thickness "
        "values are not trustworthy; re-segment.",
    ),
    (
        "not_labelled_",
        "The label scheme of this segmentation does not label the {what}: its biomarkers are "
        "reported as not labelled (informative, not a failure).",
    ),
)

_EXACT = {
    "side_mismatch": "The knee side recorded in the header (or given) differs from the side "
    "the anatomy shows: the series may be filed under the wrong knee. Check the catalog's "
    "side before comparing knees.",
    "side_unverified": "The knee side could not be checked against the anatomy: the side is "
    "taken from the header as it is.",
    "orientation_unknown": "The file does not state its geometry (orientation), so medial and "
    "lateral cannot be told apart with certainty: compartment values may be swapped.",
    "tibial_split_unclear": "The tibial cartilage was split into medial and lateral plates "
    "without a clear gap between them: the medial/lateral values may mix the two.",
    "femur_below_tibia": "The femur lies below the tibia: the image's orientation or the "
    "labels are wrong. Nothing measured for this knee is trustworthy; check the geometry.",
    "extrusion_grid_too_coarse": "The voxels are too coarse to measure meniscal extrusion "
    "(it needs about 1 mm medial-lateral and 0.75 mm in the sagittal plane): the extrusion "
    "values are not reported. Use a finer acquisition for extrusion.",
    "unmeasured_values": "Some biomarkers of labelled structures could not be measured (they "
    "are missing in the table): see the reason for which.",
}


def flag_words(flag: str) -> str:
    """A flag name made readable: ``missing_lateral_meniscus`` -> "missing lateral meniscus"."""
    return flag.replace("_", " ")


def flag_sentence(flag: str, reason: str | None = None) -> str:
    """One sentence (or two) explaining QC flag ``flag`` (its name without ``qc_``), with the
    measure step's ``reason`` appended when given. Unknown flags get a generic sentence that
    still names the flag."""
    text = _EXACT.get(flag)
    if text is None:
        for prefix, template in _PREFIXED:
            if flag.startswith(prefix):
                part = flag[len(prefix) :]
                text = template.format(what=_STRUCTURE_WORDS.get(part, flag_words(part)))
                break
    if text is None:
        text = f"QC flag '{flag_words(flag)}' was raised for this knee."
    if reason:
        text = f"{text} Measured: {reason}."
    return text
