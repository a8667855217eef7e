"""Options of the ``segment`` step: every option of ``kneescope segment`` plus ``write_labels``.

The training options live in :mod:`.training_config` (``kneescope train``).
"""

from __future__ import annotations

from kneescope.inference.segmenter import SegmentConfig


class SegmentStepConfig(SegmentConfig):
    """Options of the ``segment`` step (frozen; unknown options are refused).

    Attributes:
        write_labels: write ``labels.nii.gz`` (with its colour tables and ``labels.json``)
            per item, atomically, under the item's output folder.
        every other field: as :class:`kneescope.inference.segmenter.SegmentConfig`
            (``tta``, ``cascade``, ``device``, ``precision``, ``overlap``, ...).
    """

    write_labels: bool = True

    def segment_config(self) -> SegmentConfig:
        """The options the segmenter takes (without ``write_labels``)."""
        return SegmentConfig.model_validate(self.model_dump(exclude={"write_labels"}))
