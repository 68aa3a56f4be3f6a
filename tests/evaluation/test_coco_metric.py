"""CocoMetric: mAP of hand-made boxes, label -> category id mapping, Evaluator integration, errors."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from visdet.datasets import DatasetConfigError
from visdet.evaluation import CocoMetric
from visdet.structures import DetDataSample

CLASSES = ('cat', 'dog', 'bird')
# Two 100x80 images, boxes large enough to be "medium"/"large" in COCO's area ranges.
GT = {
    1: (np.array([[10, 10, 50, 40], [55, 20, 95, 70]], np.float32), np.array([0, 2])),
    2: (np.array([[5, 5, 60, 60]], np.float32), np.array([1])),
}


def sample(img_id: int, boxes, scores, labels, with_gt: bool = True) -> dict:
    """What mmengine's Evaluator hands to ``process``: a DetDataSample as a dict."""
    ds = DetDataSample(metainfo=dict(img_id=img_id, ori_shape=(80, 100)))
    ds.pred_instances = InstanceData(bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                     scores=torch.as_tensor(scores, dtype=torch.float32),
                                     labels=torch.as_tensor(labels, dtype=torch.int64))
    if with_gt:
        boxes_gt, labels_gt = GT[img_id]
        ds.gt_instances = InstanceData(bboxes=torch.from_numpy(boxes_gt), labels=torch.from_numpy(labels_gt))
    return ds.to_dict()


def evaluate(metric: CocoMetric, samples: list[dict]) -> dict:
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def perfect() -> list[dict]:
    return [sample(i, b, np.full(len(b), 0.9), lab) for i, (b, lab) in GT.items()]


def test_perfect_predictions_give_map_one():
    res = evaluate(CocoMetric(), perfect())
    assert set(res) == {f'coco/bbox_{k}' for k in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')}
    assert res['coco/bbox_mAP'] == 1.0 and res['coco/bbox_mAP_50'] == 1.0 and res['coco/bbox_mAP_75'] == 1.0
    assert res['coco/bbox_mAP_s'] == -1.0  # COCO's "no ground truth in this area range"


def test_shifted_predictions_score_strictly_lower():
    shifted = [sample(i, b + 6, np.full(len(b), 0.9), lab) for i, (b, lab) in GT.items()]
    res = evaluate(CocoMetric(), shifted)
    assert 0.0 < res['coco/bbox_mAP'] < 1.0
    assert res['coco/bbox_mAP_50'] == 1.0  # still above IoU 0.5


def test_wrong_labels_score_zero():
    wrong = [sample(i, b, np.full(len(b), 0.9), (lab + 1) % 3) for i, (b, lab) in GT.items()]
    assert evaluate(CocoMetric(), wrong)['coco/bbox_mAP'] == 0.0


def test_no_predictions_at_all_is_zero_not_a_crash():
    empty = [sample(i, np.zeros((0, 4)), [], []) for i in GT]
    res = evaluate(CocoMetric(), empty)
    assert res == {f'coco/bbox_{k}': 0.0 for k in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')}


def test_image_without_predictions_counts_as_misses():
    boxes, labels = GT[1]
    res = evaluate(CocoMetric(), [sample(1, boxes, [0.9, 0.8], labels), sample(2, np.zeros((0, 4)), [], [])])
    assert 0.0 < res['coco/bbox_mAP'] < 1.0


def write_ann(tmp_path: Path) -> Path:
    """The same ground truth as a COCO json with category ids 7 (bird), 1 (cat), 3 (dog)."""
    cat_id = {'cat': 1, 'dog': 3, 'bird': 7}
    anns = []
    for img_id, (boxes, labels) in GT.items():
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat_id[CLASSES[label]],
                             bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0))
    path = tmp_path / 'val.json'
    path.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'{i}.png', width=100, height=80) for i in GT], annotations=anns,
        categories=[dict(id=7, name='bird'), dict(id=1, name='cat'), dict(id=3, name='dog')])))
    return path


def test_ann_file_with_non_contiguous_category_ids(tmp_path):
    prefix = tmp_path / 'out' / 'preds'
    metric = CocoMetric(ann_file=str(write_ann(tmp_path)), outfile_prefix=str(prefix))
    samples = [sample(i, b, np.full(len(b), 0.9), lab, with_gt=False) for i, (b, lab) in GT.items()]
    assert evaluate(metric, samples)['coco/bbox_mAP'] == 1.0
    dumped = json.loads(Path(f'{prefix}.bbox.json').read_text())
    # label 0 (cat) -> 1, label 2 (bird) -> 7, label 1 (dog) -> 3; boxes as xywh.
    assert [(d['image_id'], d['category_id'], d['bbox']) for d in dumped] == [
        (1, 1, [10.0, 10.0, 40.0, 30.0]), (1, 7, [55.0, 20.0, 40.0, 50.0]), (2, 3, [5.0, 5.0, 55.0, 55.0])]


def test_ann_file_without_dataset_meta_uses_file_categories(tmp_path):
    metric = CocoMetric(ann_file=str(write_ann(tmp_path)))  # file order: bird, cat, dog
    order = {0: 1, 1: 2, 2: 0}  # CLASSES label -> file-order label
    samples = [sample(i, b, np.full(len(b), 0.9), [order[int(v)] for v in lab], with_gt=False)
               for i, (b, lab) in GT.items()]
    metric.process({}, samples)
    assert metric.evaluate(len(samples))['coco/bbox_mAP'] == 1.0


def test_through_mmengine_evaluator_with_det_data_samples():
    with DefaultScope.overwrite_default_scope('visdet'):
        evaluator = Evaluator(dict(type='CocoMetric'))
    assert isinstance(evaluator.metrics[0], CocoMetric)
    evaluator.dataset_meta = dict(classes=CLASSES)
    for img_id, (boxes, labels) in GT.items():
        ds = DetDataSample(metainfo=dict(img_id=img_id, ori_shape=(80, 100)))
        ds.gt_instances = InstanceData(bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(labels))
        ds.pred_instances = InstanceData(bboxes=torch.from_numpy(boxes), scores=torch.full((len(boxes),), 0.5),
                                         labels=torch.from_numpy(labels))
        evaluator.process([ds], data_batch=dict(inputs=[torch.zeros(3, 80, 100, dtype=torch.uint8)]))
    assert evaluator.evaluate(len(GT))['coco/bbox_mAP'] == 1.0


def test_missing_ann_file_names_the_key(tmp_path):
    with pytest.raises(DatasetConfigError, match='val_evaluator.ann_file') as err:
        CocoMetric(ann_file=str(tmp_path / 'nope.json'))
    assert str(tmp_path / 'nope.json') in str(err.value)


def test_image_not_in_ann_file(tmp_path):
    metric = CocoMetric(ann_file=str(write_ann(tmp_path)))
    with pytest.raises(DatasetConfigError, match=r'image ids \[5\]'):
        evaluate(metric, [sample(5, [[0, 0, 5, 5]], [0.5], [0], with_gt=False)])


def test_bad_arguments():
    with pytest.raises(ValueError, match="'bbox'"):
        CocoMetric(metric='segm')
    with pytest.raises(ValueError, match='outfile_prefix'):
        CocoMetric(format_only=True)


def test_summary_goes_to_the_log_not_stdout(capsys):
    """pycocotools prints its table; it must reach the mmengine logger, not raw stdout."""
    logger = MMLogger.get_instance('coco_metric_test', log_level='INFO')
    consoles = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    keep = Keep()
    for h in consoles:
        logger.removeHandler(h)
    logger.addHandler(keep)
    try:
        evaluate(CocoMetric(), perfect())
    finally:
        logger.removeHandler(keep)
        for h in consoles:
            logger.addHandler(h)
    assert 'Average Precision' in '\n'.join(records)
    assert capsys.readouterr().out == ''


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_reduced_precision_predictions_give_the_float32_map(dtype):
    """val_cfg/test_cfg.fp16=True hands over bfloat16 (CPU) or float16 (CUDA) boxes and scores; numpy has no bf16."""
    def predictions(cast: torch.dtype) -> list[dict]:
        samples = [sample(i, b + 6, np.linspace(0.9, 0.5, len(b)), lab) for i, (b, lab) in GT.items()]
        for s in samples:
            pred = s['pred_instances']
            pred['bboxes'], pred['scores'] = pred['bboxes'].to(cast), pred['scores'].to(cast)
        return samples

    reference = evaluate(CocoMetric(), predictions(torch.float32))
    assert 0.0 < reference['coco/bbox_mAP'] < 1.0
    assert evaluate(CocoMetric(), predictions(dtype)) == reference
