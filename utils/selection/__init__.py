"""Choosing settings without target labels: reverse validation and label-free scores."""
