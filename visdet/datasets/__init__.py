"""Datasets and transforms (registered in visdet's DATASETS / TRANSFORMS)."""
from visdet.datasets.coco import CocoDataset
from visdet.datasets.errors import DatasetConfigError
from visdet.datasets.samplers import AspectRatioBatchSampler
from visdet.datasets.transforms import (ImageLoadError, LoadAnnotations, LoadImageFromFile, PackDetInputs,
                                        RandomFlip, Resize)

__all__ = ['AspectRatioBatchSampler',
           'CocoDataset', 'DatasetConfigError', 'ImageLoadError', 'LoadAnnotations', 'LoadImageFromFile',
           'PackDetInputs', 'RandomFlip', 'Resize']
