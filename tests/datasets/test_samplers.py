"""AspectRatioBatchSampler: every full batch holds one orientation, as MMDetection's, built the way the Runner does."""
from __future__ import annotations

import pytest
from mmengine.dataset import DefaultSampler

from visdet.datasets import DatasetConfigError
from visdet.datasets.samplers import LANDSCAPE, PORTRAIT, AspectRatioBatchSampler, aspect_group
from visdet.registry import DATA_SAMPLERS


class Sizes:
    """A data set of image sizes only: what the sampler reads (``get_data_info``)."""

    def __init__(self, sizes: list[tuple[int, int]]) -> None:
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.sizes[index]

    def get_data_info(self, index: int) -> dict:
        width, height = self.sizes[index]
        return dict(width=width, height=height)


# 23 images, portrait and landscape interleaved irregularly (square counts as landscape, as in MMDetection).
SIZES = [(480, 640) if i % 3 == 0 or i % 7 == 0 else (640, 480 if i % 5 else 640) for i in range(23)]


def batches(batch_size: int, drop_last: bool = False, seed: int = 0) -> tuple[list[list[int]], AspectRatioBatchSampler]:
    sampler = DefaultSampler(Sizes(SIZES), shuffle=True, seed=seed)
    # Runner.build_dataloader builds a batch sampler exactly so: its cfg, plus sampler and batch_size.
    batch_sampler = DATA_SAMPLERS.build(dict(type="AspectRatioBatchSampler", drop_last=drop_last),
                                        default_args=dict(sampler=sampler, batch_size=batch_size))
    return list(batch_sampler), batch_sampler


def groups(batch: list[int]) -> set[int]:
    return {aspect_group(dict(width=SIZES[i][0], height=SIZES[i][1])) for i in batch}


def test_full_batches_share_one_orientation_and_every_index_comes_once():
    out, sampler = batches(batch_size=4)
    assert isinstance(sampler, AspectRatioBatchSampler)
    portrait = sum(1 for w, h in SIZES if w < h)
    landscape = len(SIZES) - portrait
    assert 0 < portrait < landscape  # both groups, neither a multiple of the batch size
    # Batches made while walking the sampler are full and of one group; only the leftovers (fewer than
    # batch_size per group, yielded together at the end) may mix.
    full_groups = portrait // 4 + landscape // 4
    for batch in out[:full_groups]:
        assert len(batch) == 4 and len(groups(batch)) == 1, batch
    assert {PORTRAIT, LANDSCAPE} == set().union(*(groups(b) for b in out[:full_groups]))
    leftovers = [i for b in out[full_groups:] for i in b]
    assert len(leftovers) == portrait % 4 + landscape % 4
    assert sorted(i for b in out for i in b) == list(range(len(SIZES)))
    assert len(out) == len(sampler) == -(-len(SIZES) // 4)


def test_the_order_is_the_samplers():
    """Shuffling (and its per-epoch seed) stays the sampler's: another seed, other batches; the same, the same."""
    assert batches(4, seed=1)[0] == batches(4, seed=1)[0]
    assert batches(4, seed=1)[0] != batches(4, seed=2)[0]


def test_drop_last_drops_only_the_short_last_batch():
    out, sampler = batches(batch_size=4, drop_last=True)
    assert all(len(b) == 4 for b in out)
    assert len(out) == len(sampler) == len(SIZES) // 4


@pytest.mark.parametrize("batch_size", [0, -2, 2.0, True])
def test_bad_batch_size_is_a_config_error(batch_size):
    with pytest.raises(DatasetConfigError, match="batch_size"):
        AspectRatioBatchSampler(DefaultSampler(Sizes(SIZES)), batch_size=batch_size)


def test_a_sampler_without_image_sizes_is_a_config_error():
    from torch.utils.data import SequentialSampler

    with pytest.raises(DatasetConfigError, match="get_data_info"):
        AspectRatioBatchSampler(SequentialSampler(range(4)), batch_size=2)
