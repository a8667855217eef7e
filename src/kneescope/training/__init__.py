"""Training of segmentation and classification networks under a memory plan."""
