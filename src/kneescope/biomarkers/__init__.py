"""Image biomarkers from knee label maps (numpy/scipy/scikit-image only).

Entry point: :func:`measure_knee` -> :class:`KneeMeasurements` (a flat row of biomarkers with
units in their names, QC flags and 2D thickness maps). Method and validation:
docs/biomarkers.md.
"""

from kneescope.biomarkers.frame import KneeFrame, knee_frame
from kneescope.biomarkers.maps import ThicknessMap
from kneescope.biomarkers.measure import KneeMeasurements, measure_knee
from kneescope.biomarkers.measure_config import MeasureConfig
from kneescope.biomarkers.thickness import PlateSurfaces, plate_surfaces

__all__ = [
    "KneeFrame",
    "KneeMeasurements",
    "MeasureConfig",
    "PlateSurfaces",
    "ThicknessMap",
    "knee_frame",
    "measure_knee",
    "plate_surfaces",
]
