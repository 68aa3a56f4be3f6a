"""CocoDataset: a filter_cfg that leaves no image is a named config error; bad boxes are dropped and counted."""
from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testutils import REPO, data_options
from visdet.datasets import DatasetConfigError
from visdet.datasets.errors import dataset_config_section
from visdet.registry import DATASETS

def build(cfg: dict, **overrides):
    return DATASETS.build({**cfg, **overrides})

# -------------------------------------------------- filters that leave nothing (item 11)
def test_min_size_above_every_image_names_the_key_counts_and_a_value_that_works(dataset_cfg, coco_root):
    with pytest.raises(DatasetConfigError) as err:
        build(dataset_cfg, filter_cfg=dict(filter_empty_gt=True, min_size=1000))
    msg = str(err.value)
    assert err.value.key == 'dataset.filter_cfg.min_size'
    assert msg.startswith('dataset.filter_cfg.min_size: 1000 filters out every image')
    assert str(coco_root / 'annotations' / 'ann.json') in msg and 'has 4 images' in msg
    assert 'filter_empty_gt=True removes 2' in msg and 'min_size=1000 removes 4' in msg
    assert 'set min_size to at most 48 (min_size=48 keeps 1 of 4)' in msg  # d.png, 64x48

def test_every_image_empty_names_filter_empty_gt(dataset_cfg):
    # Only 'cat' is kept: its boxes are crowd, narrower than a pixel or of zero area.
    with pytest.raises(DatasetConfigError) as err:
        build(dataset_cfg, metainfo=dict(classes=('cat',)), filter_cfg=dict(filter_empty_gt=True))
    msg = str(err.value)
    assert err.value.key == 'dataset.filter_cfg.filter_empty_gt'
    assert 'has 4 images; filter_empty_gt=True removes 4' in msg and 'min_size is off' in msg
    assert "('cat',)" in msg and 'filter_empty_gt=False' in msg
    assert '2 annotations were dropped as invalid' in msg

def test_filters_that_only_together_leave_nothing_name_filter_cfg(dataset_cfg):
    # With cat and dog, only a.png (40x30) has a usable box; min_size=31 removes a, b and c only.
    with pytest.raises(DatasetConfigError) as err:
        build(dataset_cfg, metainfo=dict(classes=('cat', 'dog')),
              filter_cfg=dict(filter_empty_gt=True, min_size=31))
    msg = str(err.value)
    assert err.value.key == 'dataset.filter_cfg'
    assert 'filter_empty_gt=True removes 3' in msg and 'min_size=31 removes 3' in msg
    assert 'up to 30' in msg

def test_test_mode_never_filters_so_never_raises(dataset_cfg):
    assert len(build(dataset_cfg, filter_cfg=dict(min_size=1000), test_mode=True)) == 4

def test_a_file_without_images_names_ann_file(tmp_path, dataset_cfg, coco_writer):
    coco_writer(tmp_path, images=[], annotations=[])
    with pytest.raises(DatasetConfigError, match="dataset.ann_file: .* lists no images"):
        build(dataset_cfg, data_root=str(tmp_path))

def test_the_runner_section_is_prefixed_to_dataset_keys():
    with pytest.raises(DatasetConfigError) as err, dataset_config_section('train_dataloader'):
        raise DatasetConfigError('1000 filters out every image', key='dataset.filter_cfg.min_size')
    assert err.value.key == 'train_dataloader.dataset.filter_cfg.min_size'
    assert str(err.value) == 'train_dataloader.dataset.filter_cfg.min_size: 1000 filters out every image'

def test_train_tool_reports_the_filter_in_one_line_exit_2(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''}
    result = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/faster_rcnn_r18_small.py', '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', *data_options(str(tmp_path / 'data')), 'train_dataloader.dataset.filter_cfg.min_size=1000'],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith('visdet: configuration error: train_dataloader.dataset.filter_cfg.min_size: '
                               '1000 filters out every image')
    assert 'has 16 images' in lines[0] and 'min_size=1000 removes 16' in lines[0] and 'at most 128' in lines[0]

# -------------------------------------------------- bad boxes (item 12)
BAD_IMAGES = [(1, 'a.png', 40, 30), (2, 'b.png', 20, 20)]
BAD_ANNOTATIONS = [
    dict(id=1, image_id=1, category_id=1, bbox=[2, 4, 10, 6], area=60, iscrowd=0),  # kept
    dict(id=2, image_id=1, category_id=1, bbox=[math.nan, 4, 10, 6], area=60, iscrowd=0),  # non-finite
    dict(id=3, image_id=1, category_id=1, bbox=[5, 5, 4, math.inf], area=60, iscrowd=0),  # never clamped
    dict(id=4, image_id=1, category_id=1, bbox=[1, 1, 0, 5], area=1, iscrowd=0),  # zero width
    dict(id=5, image_id=1, category_id=1, bbox=[1, 1, 5, -3], area=1, iscrowd=0),  # negative height
    dict(id=6, image_id=1, category_id=99, bbox=[1, 1, 5, 5], area=25, iscrowd=0),  # no such category
    dict(id=7, image_id=42, category_id=1, bbox=[1, 1, 5, 5], area=25, iscrowd=0),  # no such image
    dict(id=8, image_id=1, category_id=1, bbox=[100, 100, 5, 5], area=25, iscrowd=0),  # outside the image
    dict(id=9, image_id=1, category_id=1, bbox=['a', 1, 5, 5], area=25, iscrowd=0),  # not a number
    dict(id=10, image_id=1, category_id=1, bbox=[1, 1, 0.5, 5], area=2.5, iscrowd=0),  # under a pixel
    dict(id=11, image_id=2, category_id=1, bbox=[1, 1, 5, 5], area=0, iscrowd=0),  # area 0 in the file
    dict(id=12, image_id=2, category_id=3, bbox=[2, 2, 6, 8], area=48, iscrowd=0),  # kept (dog)
    dict(id=13, image_id=2, category_id=3, bbox=[1, 1, 2, math.nan], area=4, iscrowd=0),  # non-finite
]

@pytest.fixture
def bad_cfg(tmp_path: Path, coco_writer) -> dict:
    coco_writer(tmp_path, images=BAD_IMAGES, annotations=BAD_ANNOTATIONS,
               categories=[dict(id=1, name='cat'), dict(id=3, name='dog')])
    return dict(type='CocoDataset', data_root=str(tmp_path), ann_file='annotations/ann.json',
                data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', 'dog')))

def test_bad_boxes_are_dropped_not_clamped(bad_cfg):
    ds = build(bad_cfg)
    infos = {ds.get_data_info(i)['img_id']: ds.get_data_info(i) for i in range(len(ds))}
    assert infos[1]['instances'] == [dict(bbox=[2.0, 4.0, 12.0, 10.0], bbox_label=0, ignore_flag=0)]
    assert infos[2]['instances'] == [dict(bbox=[2.0, 2.0, 8.0, 10.0], bbox_label=1, ignore_flag=0)]

def test_every_drop_reason_is_one_warning_line_with_its_count(bad_cfg, tmp_path, warnings_logged):
    build(bad_cfg)
    lines = [r.getMessage() for r in warnings_logged]
    path = str(tmp_path / 'annotations' / 'ann.json')
    assert sorted(lines) == sorted(f'{path}: dropped {text} (ids {ids})' for text, ids in [
        ("1 of 13 annotations whose image_id is not in 'images'", '7'),
        ("1 of 13 annotations whose category_id is not in 'categories'", '6'),
        ('1 of 13 annotations with non-numeric coordinates', '9'),
        ('3 of 13 annotations with non-finite coordinates (NaN or infinity)', '2, 3, 13'),
        ('2 of 13 annotations with zero or negative width/height', '4, 5'),
        ('1 of 13 annotations narrower or shorter than 1 pixel', '10'),
        ("1 of 13 annotations with an 'area' that is not positive", '11'),
        ('1 of 13 annotations lying entirely outside their image', '8'),
    ])
    assert all(r.levelno == logging.WARNING for r in warnings_logged)

def test_a_clean_file_logs_no_drop_warning(tmp_path, warnings_logged, coco_writer):
    coco_writer(tmp_path, images=BAD_IMAGES, annotations=[BAD_ANNOTATIONS[0], BAD_ANNOTATIONS[11]],
               categories=[dict(id=1, name='cat'), dict(id=3, name='dog')])
    build(dict(type='CocoDataset', data_root=str(tmp_path), ann_file='annotations/ann.json',
               data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', 'dog'))))
    assert warnings_logged == []

def test_categories_outside_classes_are_left_out_without_a_warning(bad_cfg, warnings_logged):
    ds = build(bad_cfg, metainfo=dict(classes=('dog',)))  # cat left out on purpose: not a drop
    assert [len(ds.get_data_info(i)['instances']) for i in range(len(ds))] == [0, 1]
    assert not any('category_id' in r.getMessage() and "'6'" in r.getMessage() for r in warnings_logged)
    assert any('whose category_id is not in' in r.getMessage() for r in warnings_logged)  # id 99 still is

@pytest.mark.parametrize('filter_cfg, key, fragment', [
    (dict(min_sizes=32), 'dataset.filter_cfg', "unknown keys ['min_sizes']"),
    (dict(min_size='32'), 'dataset.filter_cfg.min_size', "is '32'; expected a number"),
    (dict(min_size=-1), 'dataset.filter_cfg.min_size', 'is -1; expected a number'),
    (True, 'dataset.filter_cfg', 'is True; expected a dict'),
])
def test_bad_filter_cfg_is_named(dataset_cfg, filter_cfg, key, fragment):
    with pytest.raises(DatasetConfigError) as err:
        build(dataset_cfg, filter_cfg=filter_cfg)
    assert err.value.key == key and fragment in str(err.value)
