"""Data structures passed between datasets, models and metrics."""
from visdet.structures.det_data_sample import DetDataSample, SampleList

__all__ = ["DetDataSample", "SampleList"]
