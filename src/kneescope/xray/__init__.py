"""Knee radiograph measurements in pure numpy/scipy: knee localisation on bilateral PA films,
joint space width and leg alignment (HKA) from landmarks. Networks live in the capabilities."""
