"""The model registry: MONAI segmentation networks and kneescope classifiers by name and config."""
