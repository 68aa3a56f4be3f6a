"""Detection transforms: loading, Resize(keep_ratio)/RandomFlip on boxes, PackDetInputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS

from visdet.datasets.transforms import (ImageLoadError, LoadAnnotations, LoadImageFromFile, PackDetInputs,
                                        RandomFlip, Resize)
from visdet.registry import DATASETS, TRANSFORMS
from visdet.structures import DetDataSample

TRAIN_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='Resize', scale=(80, 80), keep_ratio=True), dict(type='RandomFlip', prob=1.0),
                  dict(type='PackDetInputs')]


def first_item(dataset_cfg: dict, pipeline: list) -> dict:
    ds = DATASETS.build({**dataset_cfg, 'pipeline': pipeline})
    return ds[0]  # image 1: 40x30, dog box [2, 4, 12, 10] + crowd cat [20, 10, 25, 15]


def test_registered_in_visdet_scope():
    for name in ('LoadImageFromFile', 'LoadAnnotations', 'Resize', 'RandomFlip', 'PackDetInputs'):
        assert TRANSFORMS.get(name).__module__.startswith('visdet.')
    # As a Runner with default_scope='visdet' builds them (mmengine's Compose, root registry):
    with DefaultScope.overwrite_default_scope('visdet'):
        built = Compose(TRAIN_PIPELINE).transforms
    assert [type(t) for t in built] == [LoadImageFromFile, LoadAnnotations, Resize, RandomFlip, PackDetInputs]
    # mmcv registers its own (box-dtype-losing, ignore-flag-less) versions in mmengine's root
    # registry; visdet's names must shadow them.
    assert MMENGINE_TRANSFORMS.get('Resize') is not Resize


def test_train_pipeline_resize_keep_ratio_then_flip(dataset_cfg):
    item = first_item(dataset_cfg, TRAIN_PIPELINE)
    # keep_ratio into (80, 80): factor min(80/40, 80/30) = 2 -> 80x60; the box doubles to [4, 8, 24, 20];
    # a horizontal flip in width 80 maps x1' = 80 - x2, x2' = 80 - x1 -> [56, 8, 76, 20]. Crowd box dropped.
    sample = item['data_samples']
    assert isinstance(sample, DetDataSample)
    assert torch.equal(sample.gt_instances.bboxes, torch.tensor([[56.0, 8.0, 76.0, 20.0]]))
    assert sample.gt_instances.bboxes.dtype == torch.float32
    assert sample.gt_instances.labels.dtype == torch.int64 and sample.gt_instances.labels.tolist() == [1]
    assert sample.ori_shape == (30, 40) and sample.img_shape == (60, 80)
    assert sample.scale_factor == (2.0, 2.0)
    assert sample.flip is True and sample.flip_direction == 'horizontal'
    assert sample.img_id == 1 and sample.img_path.endswith('a.png')
    inputs = item['inputs']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 60, 80) and inputs.is_contiguous()
    # The blue (BGR channel 0) patch moved with its box: inside the flipped box, none left of it.
    assert inputs[0, 14, 66] == 255 and inputs[2, 14, 66] == 0
    assert inputs[0, 14, 14] == 0


def test_test_pipeline_keeps_boxes_in_original_coordinates(dataset_cfg):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(80, 80), keep_ratio=True),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                                      'scale_factor'))]
    sample = first_item(dataset_cfg, pipeline)['data_samples']
    assert torch.equal(sample.gt_instances.bboxes, torch.tensor([[2.0, 4.0, 12.0, 10.0]]))
    assert set(sample.metainfo) == {'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'}


def test_resize_clips_and_keeps_float32():
    results = dict(img=np.zeros((30, 40, 3), np.uint8),
                   gt_bboxes=np.array([[30, 20, 45, 35], [1, 1, 3, 3]], np.float32))
    out = Resize(scale=(20, 20), keep_ratio=False)(results)
    # non-uniform factors (0.5, 2/3); the first box is clipped to the 20x20 image.
    assert out['scale_factor'] == (0.5, 20 / 30) and out['img_shape'] == (20, 20)
    np.testing.assert_allclose(out['gt_bboxes'], [[15, 40 / 3, 20, 20], [0.5, 2 / 3, 1.5, 2]], rtol=1e-6)
    assert out['gt_bboxes'].dtype == np.float32


def test_flip_not_applied_sets_flags():
    results = dict(img=np.arange(24, dtype=np.uint8).reshape(2, 4, 3), gt_bboxes=np.array([[0, 0, 1, 2]], np.float32))
    out = RandomFlip(prob=0)(dict(results))
    assert out['flip'] is False and out['flip_direction'] is None
    np.testing.assert_array_equal(out['gt_bboxes'], [[0, 0, 1, 2]])
    flipped = RandomFlip(prob=1, direction='vertical')(dict(results))
    np.testing.assert_array_equal(flipped['gt_bboxes'], [[0, 0, 1, 2]])  # h=2: y1' = 2 - 2, y2' = 2 - 0


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(prob=1.5), '`prob` must be in [0, 1]'), (dict(prob='half'), '`prob` must be a float'),
    (dict(prob=0.5, direction='sideways'), "['sideways']")])
def test_flip_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError) as err:
        RandomFlip(**kwargs)
    assert fragment in str(err.value)


@pytest.mark.parametrize('kwargs', [dict(), dict(scale=(0, 10)), dict(scale='big'), dict(scale_factor=(1, 2, 3))])
def test_resize_bad_arguments(kwargs):
    with pytest.raises(ValueError, match='Resize: '):
        Resize(**kwargs)


def test_load_annotations_ignore_flags():
    results = dict(instances=[dict(bbox=[0, 0, 2, 2], bbox_label=3, ignore_flag=0),
                              dict(bbox=[1, 1, 4, 4], bbox_label=1, ignore_flag=1)])
    out = LoadAnnotations(with_bbox=True)(results)
    assert out['gt_bboxes'].dtype == np.float32 and out['gt_bboxes'].shape == (2, 4)
    assert out['gt_bboxes_labels'].dtype == np.int64 and out['gt_bboxes_labels'].tolist() == [3, 1]
    assert out['gt_ignore_flags'].dtype == bool and out['gt_ignore_flags'].tolist() == [False, True]
    empty = LoadAnnotations(with_bbox=True)(dict(instances=[]))
    assert empty['gt_bboxes'].shape == (0, 4) and empty['gt_ignore_flags'].shape == (0,)


def test_pack_without_annotations_and_default_meta_keys():
    img = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    packed = PackDetInputs()(dict(img=img, img_id=9, img_shape=(5, 7), ori_shape=(5, 7)))
    assert torch.equal(packed['inputs'], torch.from_numpy(img).permute(2, 0, 1))  # BGR kept, CHW
    sample = packed['data_samples']
    assert 'gt_instances' not in sample
    assert sample.metainfo == dict(img_id=9, img_shape=(5, 7), ori_shape=(5, 7))


def test_pack_drops_ignored_and_handles_empty():
    results = dict(img=np.zeros((4, 4, 3), np.uint8), gt_bboxes=np.zeros((0, 4), np.float32),
                   gt_bboxes_labels=np.zeros(0, np.int64), gt_ignore_flags=np.zeros(0, bool))
    gt = PackDetInputs()(results)['data_samples'].gt_instances
    assert gt.bboxes.shape == (0, 4) and gt.labels.shape == (0,)


@pytest.mark.parametrize('content', [b'', b'not an image at all'])
def test_unreadable_image_names_the_file(tmp_path, content):
    path = tmp_path / 'broken.png'
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match='broken.png') as err:
        LoadImageFromFile()(dict(img_path=str(path)))
    assert str(path) in str(err.value)


def test_missing_image_names_the_file(tmp_path):
    path = tmp_path / 'gone.png'
    with pytest.raises(ImageLoadError, match='does not exist') as err:
        LoadImageFromFile()(dict(img_path=str(path)))
    assert str(path) in str(err.value)
