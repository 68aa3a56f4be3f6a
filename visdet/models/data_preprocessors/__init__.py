"""Data preprocessors (registered in MODELS)."""
from visdet.models.data_preprocessors.det_data_preprocessor import DetDataPreprocessor

__all__ = ["DetDataPreprocessor"]
