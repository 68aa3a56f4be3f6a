"""``AspectRatioBatchSampler``: batches of images that are all portrait or all landscape, as MMDetection's.

A batch is padded to its largest image, so a portrait image batched with a
landscape one wastes most of both paddings; MMDetection's COCO configs group
images by orientation to avoid that (``batch_sampler=dict(type='AspectRatioBatchSampler')``).
Neither torch nor mmengine has such a sampler: torch's ``BatchSampler`` gives
the ``len``/``batch_size``/``drop_last`` interface the DataLoader expects, and
the grouping is written here.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from torch.utils.data import BatchSampler, Sampler

from visdet.datasets.errors import DatasetConfigError
from visdet.registry import DATA_SAMPLERS

#: Group 0 holds portrait images (width < height), group 1 landscape and square ones (MMDetection's split).
PORTRAIT, LANDSCAPE = 0, 1


def aspect_group(data_info: Mapping) -> int:
    """The orientation group of one data info (``width`` and ``height`` as the dataset records them)."""
    return PORTRAIT if data_info["width"] < data_info["height"] else LANDSCAPE


@DATA_SAMPLERS.register_module()
class AspectRatioBatchSampler(BatchSampler):
    """Batch the indices of ``sampler`` so that each full batch holds one orientation group.

    Indices are taken in the sampler's order (so shuffling and the per-epoch
    seed stay the sampler's) and collected per group; a group yields a batch
    as soon as it holds ``batch_size`` indices. What is left at the end of the
    epoch (fewer than ``batch_size`` per group) is yielded together, in
    batches of ``batch_size`` and a last smaller one unless ``drop_last``, so
    the number of batches is ``len(sampler) / batch_size`` (rounded down with
    ``drop_last``, up without) as for torch's ``BatchSampler``; at most one
    leftover batch mixes the groups.

    Args:
        sampler: Gives the indices; its ``dataset`` must have ``get_data_info(i)``
            with ``width`` and ``height`` (visdet's and MMDetection's data sets do).
        batch_size: Images per batch (the Runner passes the dataloader's ``batch_size``).
        drop_last: Drop the last batch when it is smaller than ``batch_size``.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(sampler, Sampler):
            raise DatasetConfigError(f"needs a torch Sampler, got {type(sampler).__name__}", "batch_sampler.sampler")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise DatasetConfigError(f"must be a positive integer, got {batch_size!r}", "batch_sampler.batch_size")
        dataset = getattr(sampler, "dataset", None)
        if not callable(getattr(dataset, "get_data_info", None)):
            raise DatasetConfigError(
                "needs a sampler with a 'dataset' that has get_data_info(index) (image width and height), as "
                f"mmengine's DefaultSampler over a visdet CocoDataset; got {type(sampler).__name__}",
                "batch_sampler")
        super().__init__(sampler, batch_size, drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        dataset = self.sampler.dataset  # type: ignore[attr-defined]
        buckets: list[list[int]] = [[], []]
        for index in self.sampler:
            bucket = buckets[aspect_group(dataset.get_data_info(index))]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
        left = buckets[PORTRAIT] + buckets[LANDSCAPE]
        for start in range(0, len(left), self.batch_size):
            batch = left[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch
