"""benchmarks/coco_eval_speed.py: its detections cover what they claim, its comparison tells equal from unequal,
and pycocotools and faster-coco-eval differ on seeded detections only as its report says (1 ulp of precision)."""
from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from testutils import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location("coco_eval_speed", REPO / "benchmarks" / "coco_eval_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


def test_synthetic_ground_truth_has_every_class_crowds_empty_images_and_all_sizes():
    gt = bench.synthetic_gt(200, seed=3)
    anns = gt["annotations"]
    assert {a["category_id"] for a in anns} == set(range(1, bench.NUM_CLASSES + 1))
    assert any(a["iscrowd"] for a in anns) and not all(a["iscrowd"] for a in anns)
    assert len({a["image_id"] for a in anns}) < len(gt["images"])  # some images have no ground truth
    areas = np.array([a["area"] for a in anns])
    assert (areas < 32 ** 2).any() and ((areas >= 32 ** 2) & (areas < 96 ** 2)).any() and (areas >= 96 ** 2).any()
    for a in anns:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 640 + 1e-9 and y + h <= 480 + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_detections_are_seeded_capped_float32_and_leave_some_images_empty(seed):
    gt = bench.synthetic_gt(100, seed=seed)
    records = bench.synthetic_detections(gt, 20, seed)
    assert records == bench.synthetic_detections(gt, 20, seed)
    assert records != bench.synthetic_detections(gt, 20, seed + 10)
    per_image: dict[int, int] = {}
    for r in records:
        per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
        assert r["score"] == float(np.float32(r["score"]))  # the detector's dtype
    assert max(per_image.values()) == 20 and len(per_image) < len(gt["images"])
    assert {r["category_id"] for r in records} == set(range(1, bench.NUM_CLASSES + 1))


def test_score_step_makes_ties():
    gt = bench.synthetic_gt(30, seed=0)
    scores = [r["score"] for r in bench.synthetic_detections(gt, 30, 0, score_step=0.05)]
    assert len(set(scores)) <= 21 < len(scores)


def _fake(stats, precision=None):
    precision = np.zeros((2, 3)) if precision is None else precision
    return SimpleNamespace(stats=np.asarray(stats, float), eval=dict(precision=precision, recall=np.zeros(2)))


def test_comparison_tells_exact_three_decimal_and_real_differences_apart():
    stats = np.linspace(0.1, 0.7, 12)
    same = bench.compare(_fake(stats), _fake(stats.copy()))
    assert same.exact and same.three_decimals and same.max_abs == 0 and same.precision_diff == 0
    ulp = bench.compare(_fake(stats), _fake(np.nextafter(stats, 1)))
    assert not ulp.exact and ulp.three_decimals and 0 < ulp.max_abs < 1e-15
    off = stats.copy()
    off[4] += 0.002
    real = bench.compare(_fake(stats), _fake(off))
    assert not real.exact and not real.three_decimals
    p = np.ones((2, 3))
    q = p.copy()
    q[1, 2] = 1 - 2.0 ** -52
    arrays = bench.compare(_fake(stats, p), _fake(stats, q))
    assert arrays.precision_diff == 1 and arrays.precision_values == f"{1.0!r} -> {1 - 2.0 ** -52!r}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_two_evaluators_agree_to_three_decimals_and_differ_only_by_pycocotools_epsilon(seed):
    """The report's finding on seeded data: every precision difference is pycocotools' 1/(1+eps) against 1.0."""
    pytest.importorskip("faster_coco_eval")
    gt = bench.synthetic_gt(40, seed=seed, width=200, height=150, max_objects=12, crowd_fraction=0.1)
    records = bench.synthetic_detections(gt, 25, seed, score_step=0.05 if seed % 2 else None)
    ref, _, ref_printed = bench.evaluate("pycocotools", bench.gt_index("pycocotools", gt), records)
    other, _, other_printed = bench.evaluate("faster-coco-eval", bench.gt_index("faster-coco-eval", gt), records)
    result = bench.compare(ref, other, ref_printed, other_printed)
    assert result.three_decimals and result.max_abs <= 2.0 ** -52 and result.recall_diff == 0
    assert 0.05 < ref.stats[0] < 0.95  # a case with real matching, neither trivial end
    p, q = ref.eval["precision"], other.eval["precision"]
    assert set(p[p != q].tolist()) <= {1 - 2.0 ** -52} and set(q[p != q].tolist()) <= {1.0}
    assert result.summary_same and len(bench.summary_lines(ref_printed)) == 12
