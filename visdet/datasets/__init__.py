"""Datasets, transforms and the embedded default data (registered in DATASETS/TRANSFORMS)."""
