"""Options of the ``label_volume`` step (a frozen pydantic model: unknown options refused)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kneescope.config import FROZEN


class LabelVolumeConfig(BaseModel):
    """Options of ``label_volume``.

    Attributes:
        label: the label value whose voxels are counted (1..255).
    """

    model_config = FROZEN

    label: int = Field(1, ge=1, le=255)
