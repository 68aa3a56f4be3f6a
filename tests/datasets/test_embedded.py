"""The embedded synthetic-shapes set: deterministic, well-formed, regenerated only when its spec changes."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.datasets.embedded import CLASSES, EmbeddedDataSpec, ensure, generate, is_current

SPEC = EmbeddedDataSpec(num_train=24, num_val=12, image_size=(96, 80), min_object_size=10, max_object_size=48,
                        max_objects=4)


def _digest(root: Path) -> str:
    hasher = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hasher.update(path.relative_to(root).as_posix().encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("emb") / "shapes", SPEC)


def test_same_spec_gives_identical_files(generated, tmp_path):
    assert _digest(generate(tmp_path / "again", SPEC)) == _digest(generated)


def test_a_different_seed_gives_different_images(generated, tmp_path):
    other = generate(tmp_path / "other", EmbeddedDataSpec(**{**SPEC.__dict__, "seed": 1}))
    assert (other / "train" / "000000.jpg").read_bytes() != (generated / "train" / "000000.jpg").read_bytes()


def test_annotations_are_valid_coco_inside_the_image(generated):
    for split, count in (("train", SPEC.num_train), ("val", SPEC.num_val)):
        data = json.loads((generated / "annotations" / f"instances_{split}.json").read_text())
        assert len(data["images"]) == count
        assert [c["name"] for c in data["categories"]] == list(CLASSES)
        per_image: dict[int, int] = {}
        width, height = SPEC.image_size
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, ann
            assert SPEC.min_object_size * 0.5 <= max(w, h) <= SPEC.max_object_size * 1.5, ann
            per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        assert all(SPEC.min_objects <= n <= SPEC.max_objects for n in per_image.values())
        assert len(per_image) == count  # no image without objects
        for image in data["images"]:
            assert (generated / split / image["file_name"]).is_file()


def test_classes_are_balanced_and_not_told_apart_by_colour(generated):
    data = json.loads((generated / "annotations" / "instances_train.json").read_text())
    labels = np.array([a["category_id"] for a in data["annotations"]])
    shares = np.bincount(labels, minlength=len(CLASSES) + 1)[1:] / len(labels)
    assert shares.max() < 0.45 and shares.min() > 0.1, shares


def test_a_constant_prediction_scores_near_zero(generated):
    """One box per class at the mean train box must not solve the task (it is a real learning problem)."""
    with contextlib.redirect_stdout(io.StringIO()):
        train = COCO(str(generated / "annotations" / "instances_train.json"))
        val = COCO(str(generated / "annotations" / "instances_val.json"))
    boxes = np.array([a["bbox"] for a in train.dataset["annotations"]])
    mean_box = boxes.mean(axis=0).tolist()
    results = [dict(image_id=i, category_id=c, bbox=mean_box, score=0.5)
               for i in val.getImgIds() for c in range(1, len(CLASSES) + 1)]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(val, val.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] < 0.05, evaluator.stats[0]


def test_ensure_keeps_a_current_set_and_regenerates_a_changed_or_partial_one(tmp_path):
    root = tmp_path / "shapes"
    small = EmbeddedDataSpec(num_train=2, num_val=1, image_size=(64, 64), min_object_size=8, max_object_size=32)
    assert ensure(root, small) is True
    stamp = (root / "train" / "000000.jpg").stat().st_mtime_ns
    assert ensure(root, small) is False
    assert (root / "train" / "000000.jpg").stat().st_mtime_ns == stamp
    bigger = EmbeddedDataSpec(**{**small.__dict__, "num_train": 3})
    assert not is_current(root, bigger)
    assert ensure(root, bigger) is True and len(list((root / "train").iterdir())) == 3
    (root / "manifest.json").unlink()  # as if generation had been interrupted before the rename
    assert ensure(root, bigger) is True and is_current(root, bigger)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shapes")]  # no staging left behind


@pytest.mark.parametrize("cfg, key", [
    (dict(num_trian=3), "num_trian"),
    (dict(image_size=(16, 16)), "image_size"),
    (dict(classes=("rectangle", "hexagon")), "classes"),
    (dict(min_object_size=50, max_object_size=20), "min_object_size"),
])
def test_bad_specs_name_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        EmbeddedDataSpec.from_cfg(cfg)
