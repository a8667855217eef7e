"""Segmentation inference: sliding windows, cascades, label maps with bounded memory."""
