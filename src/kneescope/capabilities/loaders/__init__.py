"""Loaders: the steps that read an item's image or label map (``load_volume``, ``load_labels``).

Modules: :mod:`.step` (the steps), :mod:`.results` (their result columns). Loaders train
nothing and use no model file.
"""
