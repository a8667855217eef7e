"""kneescope: knee-osteoarthritis imaging cohorts to segmentations, biomarkers and scores.

Importing the package does nothing but define names: no I/O, no logging setup, no heavy
imports (torch, monai, dask and SimpleITK are imported where they are used).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kneescope")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
