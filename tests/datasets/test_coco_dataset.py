"""CocoDataset: parsing, class subsets, filtering, and config errors raised at build time."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from testutils import run_python
from visdet.datasets import CocoDataset, DatasetConfigError, ImageLoadError
from visdet.errors import ConfigError
from visdet.registry import DATASETS
from visdet.structures import DetDataSample


def build(cfg: dict, **overrides) -> CocoDataset:
    return DATASETS.build({**cfg, **overrides})


def by_id(ds: CocoDataset) -> dict[int, dict]:
    return {ds.get_data_info(i)['img_id']: ds.get_data_info(i) for i in range(len(ds))}


def test_parses_boxes_as_xyxy_with_crowd_ignored(dataset_cfg, coco_root):
    ds = build(dataset_cfg)
    infos = by_id(ds)
    assert sorted(infos) == [1, 2, 3, 4]
    first = infos[1]
    assert first['img_path'].endswith('images/a.png') and first['img_path'].startswith(str(coco_root))
    assert (first['height'], first['width']) == (30, 40)
    # w<1 and zero-area boxes are skipped; crowd kept with ignore_flag=1; labels in classes order.
    assert first['instances'] == [
        dict(bbox=[2.0, 4.0, 12.0, 10.0], bbox_label=1, ignore_flag=0),
        dict(bbox=[20.0, 10.0, 25.0, 15.0], bbox_label=0, ignore_flag=1),
    ]
    assert infos[4]['instances'] == [dict(bbox=[10.0, 12.0, 30.0, 28.0], bbox_label=2, ignore_flag=0)]
    assert infos[3]['instances'] == []
    assert ds.metainfo['classes'] == ('cat', 'dog', 'bird')
    assert ds.cat_ids == [1, 3, 7]
    assert ds.get_cat_ids(0) == [1, 0]


def test_class_subset_is_looked_up_by_name_in_classes_order(dataset_cfg):
    ds = build(dataset_cfg, metainfo=dict(classes=('bird', 'cat')))
    assert ds.cat2label == {7: 0, 1: 1}
    infos = by_id(ds)
    assert infos[1]['instances'] == [dict(bbox=[20.0, 10.0, 25.0, 15.0], bbox_label=1, ignore_flag=1)]  # dog gone
    assert infos[4]['instances'][0]['bbox_label'] == 0


def test_filter_empty_gt_and_min_size(dataset_cfg):
    ds = build(dataset_cfg, filter_cfg=dict(filter_empty_gt=True, min_size=25))
    assert sorted(by_id(ds)) == [1, 4]  # 2 has only a crowd box, 3 has none
    ds = build(dataset_cfg, filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert sorted(by_id(ds)) == [4]  # image 1 is 40x30
    ds = build(dataset_cfg, filter_cfg=dict(filter_empty_gt=False, min_size=15))
    assert sorted(by_id(ds)) == [1, 2, 4]


def test_test_mode_keeps_every_image(dataset_cfg):
    ds = build(dataset_cfg, filter_cfg=dict(filter_empty_gt=True, min_size=32), test_mode=True)
    assert sorted(by_id(ds)) == [1, 2, 3, 4]


def test_lazy_init_defers_loading_and_errors(dataset_cfg, tmp_path):
    ds = build(dataset_cfg, data_root=str(tmp_path / 'nowhere'), lazy_init=True)
    assert not ds._fully_initialized
    with pytest.raises(DatasetConfigError, match='dataset.data_root'):
        ds.full_init()
    ok = build(dataset_cfg, lazy_init=True)
    assert len(ok) == 4  # __len__ triggers full_init


def test_pipeline_dicts_build_without_a_runner(dataset_cfg):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='Resize', scale=(80, 80), keep_ratio=True), dict(type='RandomFlip', prob=0.0),
                dict(type='PackDetInputs')]
    item = build(dataset_cfg, pipeline=pipeline)[0]
    assert item['inputs'].shape == (3, 60, 80) and item['inputs'].dtype == torch.uint8
    sample = item['data_samples']
    assert isinstance(sample, DetDataSample)
    assert sample.img_id == 1 and sample.flip is False
    assert torch.equal(sample.gt_instances.bboxes, torch.tensor([[4.0, 8.0, 24.0, 20.0]]))
    assert sample.gt_instances.labels.tolist() == [1]


def test_building_prints_nothing(dataset_cfg, coco_root, capsys):
    # Without the fixture's two deliberately unusable boxes (those are logged as dropped).
    path = coco_root / 'annotations' / 'ann.json'
    data = json.loads(path.read_text())
    data['annotations'] = [a for a in data['annotations'] if a['id'] not in (3, 4)]
    path.write_text(json.dumps(data))
    build(dataset_cfg)
    out = capsys.readouterr()
    assert out.out == '' and out.err == ''


def test_import_is_quiet():
    proc = run_python('import visdet.datasets, visdet.evaluation')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '' and proc.stderr == ''


# ------------------------------------------------------------------ errors
def test_missing_data_root_names_key_and_path(dataset_cfg, tmp_path):
    missing = tmp_path / 'no_such_root'
    with pytest.raises(DatasetConfigError, match='dataset.data_root') as err:
        build(dataset_cfg, data_root=str(missing))
    assert str(missing) in str(err.value)
    assert isinstance(err.value, ConfigError) and err.value.key == 'dataset.data_root'


def test_missing_ann_file_names_key_and_resolved_path(dataset_cfg, coco_root):
    with pytest.raises(DatasetConfigError, match='dataset.ann_file') as err:
        build(dataset_cfg, ann_file='annotations/missing.json')
    assert str(coco_root / 'annotations' / 'missing.json') in str(err.value)


def test_missing_image_folder(dataset_cfg, coco_root):
    with pytest.raises(DatasetConfigError, match='dataset.data_prefix.img') as err:
        build(dataset_cfg, data_prefix=dict(img='train2017/'))
    assert str(coco_root / 'train2017') in str(err.value)


def test_missing_image_file_is_caught_at_build(dataset_cfg, coco_root):
    (coco_root / 'images' / 'a.png').unlink()
    with pytest.raises(DatasetConfigError, match='dataset.data_prefix.img') as err:
        build(dataset_cfg)
    assert str(coco_root / 'images' / 'a.png') in str(err.value)


def test_unreadable_image_is_named_at_build(dataset_cfg, coco_root):
    (coco_root / 'images' / 'c.png').write_bytes(b'not an image')
    with pytest.raises(ImageLoadError, match='not a readable image') as err:
        build(dataset_cfg)
    assert str(coco_root / 'images' / 'c.png') in str(err.value)
    assert len(build(dataset_cfg, check_images=False)) > 0  # opt-out: met when decoded instead


def test_later_missing_image_is_named_at_build(dataset_cfg, coco_root):
    (coco_root / 'images' / 'd.png').unlink()  # not the first listed: the header check finds it
    with pytest.raises(ImageLoadError, match='does not exist') as err:
        build(dataset_cfg)
    assert str(coco_root / 'images' / 'd.png') in str(err.value)


@pytest.mark.parametrize('content, fragment', [
    ('[1, 2, 3]', 'top level is a list'),
    ('{"images": [], "annotations": []}', "no 'categories' list"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', "images[0] lacks ['file_name'"),
    ('{"images": [], "annotations": [], "categories": [', 'not valid JSON'),
])
def test_non_coco_json(dataset_cfg, coco_root, content, fragment):
    (coco_root / 'annotations' / 'ann.json').write_text(content)
    with pytest.raises(DatasetConfigError, match='dataset.ann_file') as err:
        build(dataset_cfg)
    assert fragment in str(err.value)


def test_unknown_class_names_are_listed(dataset_cfg):
    with pytest.raises(DatasetConfigError, match='dataset.metainfo.classes') as err:
        build(dataset_cfg, metainfo=dict(classes=('cat', 'zebra', 'unicorn')))
    msg = str(err.value)
    assert "['zebra', 'unicorn']" in msg and "['bird', 'cat', 'dog']" in msg


def test_default_coco_classes_against_other_file_hint_metainfo(dataset_cfg):
    cfg = {k: v for k, v in dataset_cfg.items() if k != 'metainfo'}
    with pytest.raises(DatasetConfigError, match='metainfo=dict\\(classes=') as err:
        build(cfg)
    assert str(err.value).startswith("dataset.metainfo.classes: class names ['person'")


def test_bad_classes_type(dataset_cfg):
    with pytest.raises(DatasetConfigError, match='dataset.metainfo.classes'):
        build(dataset_cfg, metainfo=dict(classes=[1, 2]))


def test_duplicate_annotation_ids(dataset_cfg, coco_root):
    path = coco_root / 'annotations' / 'ann.json'
    data = json.loads(path.read_text())
    data['annotations'][1]['id'] = data['annotations'][0]['id']
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetConfigError, match='repeats annotation ids'):
        build(dataset_cfg)


def test_images_in_data_root_itself(dataset_cfg, coco_root):
    for png in (coco_root / 'images').iterdir():
        shutil.move(str(png), coco_root / png.name)
    ds = build(dataset_cfg, data_prefix=dict(img=''))
    assert ds.get_data_info(0)['img_path'] == str(coco_root / 'a.png')
