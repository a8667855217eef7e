"""Holistic OA score, progression prediction and treatment evaluation."""
