"""A tiny COCO dataset on disk: four PNGs and a json with non-contiguous category ids."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

CATEGORIES = [dict(id=7, name='bird'), dict(id=1, name='cat'), dict(id=3, name='dog')]
IMAGES = [  # id, file, width, height
    (1, 'a.png', 40, 30),
    (2, 'b.png', 20, 20),
    (3, 'c.png', 10, 8),
    (4, 'd.png', 64, 48),
]
ANNOTATIONS = [
    dict(id=1, image_id=1, category_id=3, bbox=[2, 4, 10, 6], area=60, iscrowd=0),  # dog -> [2, 4, 12, 10]
    dict(id=2, image_id=1, category_id=1, bbox=[20, 10, 5, 5], area=25, iscrowd=1),  # crowd cat
    dict(id=3, image_id=1, category_id=1, bbox=[0, 0, 0.5, 5], area=2.5, iscrowd=0),  # w < 1: skipped
    dict(id=4, image_id=1, category_id=1, bbox=[5, 5, 4, 4], area=0, iscrowd=0),  # zero area: skipped
    dict(id=5, image_id=2, category_id=1, bbox=[1, 1, 5, 5], area=25, iscrowd=1),  # image 2: crowd only
    dict(id=6, image_id=4, category_id=7, bbox=[10, 12, 20, 16], area=320, iscrowd=0),  # bird -> [10, 12, 30, 28]
]


def write_coco(root: Path, images=IMAGES, annotations=ANNOTATIONS, categories=CATEGORIES) -> Path:
    """Write ``root/annotations/ann.json`` and ``root/images/*.png``; a blue box where annotation 1 is."""
    (root / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    for img_id, name, width, height in images:
        img = np.zeros((height, width, 3), np.uint8)
        if img_id == 1:
            img[4:10, 2:12] = (255, 0, 0)  # BGR blue over the dog box
        cv2.imwrite(str(root / 'images' / name), img)
    ann = dict(images=[dict(id=i, file_name=n, width=w, height=h) for i, n, w, h in images],
               annotations=annotations, categories=categories)
    path = root / 'annotations' / 'ann.json'
    path.write_text(json.dumps(ann))
    return path


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    write_coco(tmp_path)
    return tmp_path


@pytest.fixture
def dataset_cfg(coco_root: Path) -> dict:
    return dict(type='CocoDataset', data_root=str(coco_root), ann_file='annotations/ann.json',
                data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', 'dog', 'bird')))


@pytest.fixture
def coco_writer():
    """``write_coco`` for tests that write their own images and annotations (conftest is not importable)."""
    return write_coco
