"""Detection transforms (registered in visdet's TRANSFORMS under mmcv/mmdet names)."""
from visdet.datasets.transforms.formatting import PackDetInputs
from visdet.datasets.transforms.geometric import RandomFlip, Resize
from visdet.datasets.transforms.loading import ImageLoadError, LoadAnnotations, LoadImageFromFile

__all__ = ['ImageLoadError', 'LoadAnnotations', 'LoadImageFromFile', 'PackDetInputs', 'RandomFlip', 'Resize']
