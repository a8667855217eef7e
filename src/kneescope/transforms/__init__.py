"""Preprocessing and augmentation transforms (MONAI) for training and inference."""
