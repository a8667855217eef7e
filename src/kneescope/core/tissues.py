"""Tissue classes of the synthetic knee and their signal in three knee MRI contrasts.

The generator labels *every* tissue it draws (a uint8 tissue map beside the 9-structure label
map), so that domain randomisation can give each tissue its own random intensity (SynthSeg's
recipe, Billot et al., Medical Image Analysis 2023) and so that contrasts are a table, not code.

:data:`TISSUES` maps tissue value -> name; :data:`TISSUE_TO_LABEL` maps a tissue to the
kneescope label (``core.labels.KNEE_LABELS``) it belongs to (0 for unlabelled tissue);
:data:`CONTRASTS` holds the relative signal (fluid-normalised, 0..1) of every tissue per
contrast.

Where the relative signals come from (docs/synth.md, "Contrasts"): relaxation times at 3 T
from Gold et al., "Musculoskeletal MRI at 3.0 T: relaxation times and image contrast", AJR
2004;183:343-351 (cartilage T1/T2 1240/37 ms, synovial fluid 3620/767 ms, muscle 1420/32 ms,
marrow 371/133 ms, subcutaneous fat 382/68 ms), meniscus and tendon T2 of 10-15 ms and < 3 ms
(short-T2 tissue, e.g. Chang et al., JMRI 2015 review of UTE), put through a steady-state
gradient-echo approximation at the OAI settings (DESS TR 16.3 ms, TE 4.7 ms, flip 25 degrees,
water excitation: fat signal x 0.1; Peterfy et al., Osteoarthritis Cartilage 2008;16:1433-41)
and rounded; the order of the result (fluid > cartilage > muscle > marrow ~ fat > menisci,
tendons, cortex) is the appearance the OAI protocol paper describes. The other two contrasts
follow the same ordering rules for an intermediate-weighted fat-suppressed TSE (fluid bright,
cartilage intermediate, marrow and fat dark, bone-marrow lesions bright) and a T1-weighted
gradient echo without fat suppression (fat and marrow bright, fluid dark). They are centres
for randomisation, not measurements of any one scanner.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

BACKGROUND = 0
FEMUR_MARROW = 1
FEMUR_CORTEX = 2
TIBIA_MARROW = 3
TIBIA_CORTEX = 4
PATELLA_MARROW = 5
PATELLA_CORTEX = 6
FIBULA_MARROW = 7
FIBULA_CORTEX = 8
FEMORAL_CARTILAGE = 9
MEDIAL_TIBIAL_CARTILAGE = 10
LATERAL_TIBIAL_CARTILAGE = 11
PATELLAR_CARTILAGE = 12
MEDIAL_MENISCUS = 13
LATERAL_MENISCUS = 14
FLUID = 15
TENDON = 16
CRUCIATE = 17
MUSCLE = 18
FAT = 19
FAT_PAD = 20
VESSEL = 21
FEMUR_LESION = 22
TIBIA_LESION = 23
MEDIAL_MENISCUS_TEAR = 24
LATERAL_MENISCUS_TEAR = 25

TISSUES: Mapping[int, str] = MappingProxyType(
    {
        BACKGROUND: "background",
        FEMUR_MARROW: "femur_marrow",
        FEMUR_CORTEX: "femur_cortex",
        TIBIA_MARROW: "tibia_marrow",
        TIBIA_CORTEX: "tibia_cortex",
        PATELLA_MARROW: "patella_marrow",
        PATELLA_CORTEX: "patella_cortex",
        FIBULA_MARROW: "fibula_marrow",
        FIBULA_CORTEX: "fibula_cortex",
        FEMORAL_CARTILAGE: "femoral_cartilage",
        MEDIAL_TIBIAL_CARTILAGE: "medial_tibial_cartilage",
        LATERAL_TIBIAL_CARTILAGE: "lateral_tibial_cartilage",
        PATELLAR_CARTILAGE: "patellar_cartilage",
        MEDIAL_MENISCUS: "medial_meniscus",
        LATERAL_MENISCUS: "lateral_meniscus",
        FLUID: "fluid",
        TENDON: "tendon",
        CRUCIATE: "cruciate_ligament",
        MUSCLE: "muscle",
        FAT: "subcutaneous_fat",
        FAT_PAD: "infrapatellar_fat_pad",
        VESSEL: "vessel",
        FEMUR_LESION: "femur_marrow_lesion",
        TIBIA_LESION: "tibia_marrow_lesion",
        MEDIAL_MENISCUS_TEAR: "medial_meniscus_tear",
        LATERAL_MENISCUS_TEAR: "lateral_meniscus_tear",
    }
)
"""Tissue value -> name (values are contiguous from 0)."""

N_TISSUES = len(TISSUES)

TISSUE_TO_LABEL: Mapping[int, int] = MappingProxyType(
    {
        FEMUR_MARROW: 1,
        FEMUR_CORTEX: 1,
        FEMUR_LESION: 1,
        FEMORAL_CARTILAGE: 2,
        TIBIA_MARROW: 3,
        TIBIA_CORTEX: 3,
        TIBIA_LESION: 3,
        MEDIAL_TIBIAL_CARTILAGE: 4,
        LATERAL_TIBIAL_CARTILAGE: 5,
        PATELLA_MARROW: 6,
        PATELLA_CORTEX: 6,
        PATELLAR_CARTILAGE: 7,
        MEDIAL_MENISCUS: 8,
        MEDIAL_MENISCUS_TEAR: 8,
        LATERAL_MENISCUS: 9,
        LATERAL_MENISCUS_TEAR: 9,
    }
)
"""Tissue -> kneescope label (tissues not listed, e.g. fibula, fluid, muscle: 0). A torn
meniscus and a bone with a marrow lesion are still that meniscus and that bone."""


def _table(values: Mapping[str, float]) -> npt.NDArray[np.float32]:
    missing = set(TISSUES.values()) - set(values)
    if missing:
        raise ValueError(f"contrast table misses {sorted(missing)}")
    return np.array([values[TISSUES[t]] for t in range(N_TISSUES)], dtype=np.float32)


_DESS = {
    "background": 0.0,
    "femur_marrow": 0.12,
    "femur_cortex": 0.03,
    "tibia_marrow": 0.12,
    "tibia_cortex": 0.03,
    "patella_marrow": 0.12,
    "patella_cortex": 0.03,
    "fibula_marrow": 0.12,
    "fibula_cortex": 0.03,
    "femoral_cartilage": 0.55,
    "medial_tibial_cartilage": 0.55,
    "lateral_tibial_cartilage": 0.55,
    "patellar_cartilage": 0.55,
    "medial_meniscus": 0.05,
    "lateral_meniscus": 0.05,
    "fluid": 1.0,
    "tendon": 0.03,
    "cruciate_ligament": 0.08,
    "muscle": 0.36,
    "subcutaneous_fat": 0.08,
    "infrapatellar_fat_pad": 0.1,
    "vessel": 0.7,
    "femur_marrow_lesion": 0.35,
    "tibia_marrow_lesion": 0.35,
    "medial_meniscus_tear": 0.6,
    "lateral_meniscus_tear": 0.6,
}

_IW_TSE_FS = {
    **_DESS,
    "femur_marrow": 0.1,
    "tibia_marrow": 0.1,
    "patella_marrow": 0.1,
    "fibula_marrow": 0.1,
    "femoral_cartilage": 0.45,
    "medial_tibial_cartilage": 0.45,
    "lateral_tibial_cartilage": 0.45,
    "patellar_cartilage": 0.45,
    "muscle": 0.22,
    "subcutaneous_fat": 0.06,
    "infrapatellar_fat_pad": 0.08,
    "vessel": 0.3,
    "femur_marrow_lesion": 0.7,
    "tibia_marrow_lesion": 0.7,
    "medial_meniscus_tear": 0.75,
    "lateral_meniscus_tear": 0.75,
}

_T1_GRE = {
    **_DESS,
    "femur_marrow": 0.85,
    "tibia_marrow": 0.85,
    "patella_marrow": 0.85,
    "fibula_marrow": 0.85,
    "femur_cortex": 0.02,
    "femoral_cartilage": 0.45,
    "medial_tibial_cartilage": 0.45,
    "lateral_tibial_cartilage": 0.45,
    "patellar_cartilage": 0.45,
    "fluid": 0.2,
    "muscle": 0.3,
    "subcutaneous_fat": 1.0,
    "infrapatellar_fat_pad": 0.95,
    "vessel": 0.25,
    "femur_marrow_lesion": 0.35,
    "tibia_marrow_lesion": 0.35,
    "medial_meniscus_tear": 0.3,
    "lateral_meniscus_tear": 0.3,
}

CONTRASTS: Mapping[str, npt.NDArray[np.float32]] = MappingProxyType(
    {"dess": _table(_DESS), "iw-tse-fs": _table(_IW_TSE_FS), "t1-gre": _table(_T1_GRE)}
)
"""Contrast name -> float32 (N_TISSUES,) relative signal per tissue value (fluid-normalised
for DESS and IW-TSE-FS, fat-normalised for T1-GRE)."""


def tissue_label_lut() -> npt.NDArray[np.uint8]:
    """uint8 (N_TISSUES,) look-up table: ``lut[tissue_map]`` is the kneescope label map."""
    lut = np.zeros(N_TISSUES, dtype=np.uint8)
    for tissue, label in TISSUE_TO_LABEL.items():
        lut[tissue] = label
    return lut


def contrast_table(name: str) -> npt.NDArray[np.float32]:
    """The relative signal per tissue of contrast ``name`` (a copy); ``KeyError`` if unknown."""
    return CONTRASTS[name].copy()
