"""One exception hierarchy for kneescope.

Every error the library raises on purpose derives from :class:`KneescopeError` and also from
the matching built-in, so callers may catch either. Messages say what was expected, what was
found and what to do; the CLI prints them as one line and exits non-zero.
"""

from __future__ import annotations


class KneescopeError(Exception):
    """Root of all kneescope errors."""

    exit_code: int = 1


class InputError(KneescopeError, ValueError):
    """An input (file, folder, table, argument) is malformed or inconsistent."""

    exit_code = 2


class GeometryError(InputError):
    """Image geometry is missing, degenerate or inconsistent (spacing, orientation, affine)."""


class DicomError(InputError):
    """A DICOM file or series cannot be read as the image it claims to be."""


class UnsupportedFormatError(InputError):
    """A file exists but is in no format kneescope reads."""


class ConfigError(KneescopeError, ValueError):
    """A configuration file or option is invalid."""

    exit_code = 2


class CatalogError(KneescopeError, RuntimeError):
    """The catalog database cannot be opened or holds something unexpected."""


class NotFoundError(KneescopeError, LookupError):
    """A requested item (series, subject, model, run) is not in the catalog or workspace."""

    exit_code = 3


class StoreError(KneescopeError, RuntimeError):
    """The analysis-ready store cannot be read or written."""


class ModelError(KneescopeError, RuntimeError):
    """A model file is missing, corrupt or incompatible."""


class ResourceError(KneescopeError, MemoryError):
    """A computation does not fit the memory or device budget it was given."""


class RunError(KneescopeError, RuntimeError):
    """A cohort run cannot start or continue."""
