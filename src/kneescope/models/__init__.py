"""The model registry: MONAI segmentation networks and kneescope classifiers by name and config.

Public API: :class:`NetworkConfig`, :func:`build_network`, :func:`preset`, :data:`PRESETS`,
:func:`divisor`, :func:`count_parameters`, :func:`model_fingerprint`,
:func:`apply_checkpointing` (activation checkpointing for any registry network).
"""

from kneescope.models.network_config import NetworkConfig, NetworkName
from kneescope.models.registry import (
    PRESETS,
    build_network,
    count_parameters,
    divisor,
    is_classifier,
    model_fingerprint,
    preset,
)
from kneescope.models.vgg_classifier import VGGClassifier, vgg_parameter_count

__all__ = [
    "PRESETS",
    "NetworkConfig",
    "NetworkName",
    "VGGClassifier",
    "build_network",
    "count_parameters",
    "divisor",
    "is_classifier",
    "model_fingerprint",
    "preset",
    "vgg_parameter_count",
]
