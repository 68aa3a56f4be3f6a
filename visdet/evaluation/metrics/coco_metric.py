"""``CocoMetric``: COCO box mAP of a detector's predictions, via pycocotools.

pycocotools' ``COCOeval`` does the matching and averaging; mmengine's
``BaseMetric`` does the per-batch collection across ranks. Written here is
the glue MMDetection's metric provides: predictions (labels 0..K-1, xyxy)
to COCO result records (category ids, xywh), ground truth either from the
annotation json or, without one, from the samples' ``gt_instances``, and
pycocotools' printed summary sent to the log instead of stdout.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import os.path as osp
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine import fileio
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.datasets.coco import class_cat_ids, load_coco_json, quiet_coco
from visdet.datasets.errors import DatasetConfigError
from visdet.registry import METRICS

# Result key -> index in COCOeval.stats (the first six lines of its summary).
STAT_INDEX = {'mAP': 0, 'mAP_50': 1, 'mAP_75': 2, 'mAP_s': 3, 'mAP_m': 4, 'mAP_l': 5}
ANN_FILE_KEY = 'val_evaluator.ann_file'


def _numpy(value: Any) -> np.ndarray:
    """A tensor / array / list as a numpy array (the Evaluator hands over CPU tensors).

    Floating tensors become float32 first: under ``val_cfg.fp16``/``test_cfg.fp16``
    the model predicts in bfloat16 (CPU) or float16, and numpy has no bfloat16.
    """
    if hasattr(value, 'detach'):
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:  # float16, bfloat16 (float64 stays)
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO bbox mAP: ``bbox_mAP``, ``bbox_mAP_50``, ``_75``, ``_s``, ``_m``, ``_l`` (prefix ``coco/``).

    Args:
        ann_file: COCO json of the evaluated images (preferred). When None,
            ground truth is built from each sample's ``gt_instances`` taken in
            original-image coordinates, as the test pipeline (LoadAnnotations
            after Resize) produces them.
        metric: only ``'bbox'``.
        format_only: only write ``outfile_prefix.bbox.json``, compute nothing.
        outfile_prefix: when set, predictions are also dumped to
            ``{outfile_prefix}.bbox.json`` in COCO result format.
        backend_args: mmengine file-backend arguments for ``ann_file``.
    """

    default_prefix = 'coco'

    def __init__(self, ann_file: str | None = None, metric: str | Sequence[str] = 'bbox',
                 format_only: bool = False, outfile_prefix: str | None = None,
                 backend_args: dict | None = None, collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if metrics != ['bbox']:
            raise ValueError(f"CocoMetric: `metric` must be 'bbox' (the only one visdet evaluates), got {metric!r}.")
        if format_only and not outfile_prefix:
            raise ValueError('CocoMetric: `format_only=True` needs `outfile_prefix` to write the results to.')
        self.metric = 'bbox'
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix
        self.ann_file = ann_file
        self._coco_gt: COCO | None = None
        if ann_file is not None:
            self._coco_gt = quiet_coco(load_coco_json(ann_file, ANN_FILE_KEY, backend_args))

    # ---------------------------------------------------------------- process
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep each image's predictions (and, without ``ann_file``, its ground truth)."""
        for sample in data_samples:
            pred = sample['pred_instances']
            result = dict(img_id=int(sample['img_id']),
                          bboxes=_numpy(pred['bboxes']).reshape(-1, 4).astype(np.float64),
                          scores=_numpy(pred['scores']).reshape(-1).astype(np.float64),
                          labels=_numpy(pred['labels']).reshape(-1).astype(np.int64))
            gt = None
            if self._coco_gt is None:
                gt_inst = sample.get('gt_instances', {})
                height, width = (int(v) for v in sample['ori_shape'])
                gt = dict(width=width, height=height,
                          bboxes=_numpy(gt_inst.get('bboxes', np.zeros((0, 4)))).reshape(-1, 4).astype(np.float64),
                          labels=_numpy(gt_inst.get('labels', np.zeros(0))).reshape(-1).astype(np.int64))
            self.results.append((result, gt))

    # ---------------------------------------------------------------- compute
    def _classes(self, results: list) -> list[str]:
        classes = (self.dataset_meta or {}).get('classes')
        if classes:
            return list(classes)
        if self._coco_gt is not None:  # no dataset metainfo: every category of the file, in file order
            return [cat['name'] for cat in self._coco_gt.dataset['categories']]
        labels = [int(v) for res, gt in results for v in np.concatenate(
            [res['labels'], gt['labels'] if gt is not None else np.zeros(0, np.int64)])]
        return [str(i) for i in range(max(labels, default=-1) + 1)]

    def _gt_from_samples(self, results: list, classes: list[str]) -> COCO:
        """A COCO ground truth made from the stored ``gt_instances`` (category id = label + 1)."""
        images, annotations = [], []
        for res, gt in results:
            images.append(dict(id=res['img_id'], width=gt['width'], height=gt['height'], file_name=''))
            for box, label in zip(gt['bboxes'], gt['labels']):
                xywh = _xywh(box)
                annotations.append(dict(id=len(annotations) + 1, image_id=res['img_id'], bbox=xywh,
                                        area=xywh[2] * xywh[3], category_id=int(label) + 1, iscrowd=0))
        categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
        return quiet_coco(dict(images=images, annotations=annotations, categories=categories))

    def results2json(self, results: list, cat_ids: list[int]) -> list[dict]:
        """Predictions as COCO result records (xywh box, score, category id)."""
        records = []
        for res, _ in results:
            for box, score, label in zip(res['bboxes'], res['scores'], res['labels']):
                if not 0 <= label < len(cat_ids):
                    raise ValueError(f'CocoMetric: predicted label {int(label)} is outside the '
                                     f'{len(cat_ids)} classes of dataset_meta; the model\'s num_classes must '
                                     'match the dataset classes.')
                records.append(dict(image_id=res['img_id'], bbox=_xywh(box), score=float(score),
                                    category_id=int(cat_ids[label])))
        return records

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Run COCOeval over the processed images and return the six box-AP numbers."""
        classes = self._classes(results)
        if self._coco_gt is not None:
            coco_gt = self._coco_gt
            cat_ids = class_cat_ids(classes, coco_gt.dataset['categories'], self.ann_file or '', ANN_FILE_KEY)
        else:
            coco_gt = self._gt_from_samples(results, classes)
            cat_ids = list(range(1, len(classes) + 1))
        records = self.results2json(results, cat_ids)
        if self.outfile_prefix:
            out = f'{self.outfile_prefix}.bbox.json'
            if osp.dirname(out):
                os.makedirs(osp.dirname(out), exist_ok=True)
            fileio.dump(records, out)
            print_log(f'CocoMetric: wrote {len(records)} detections to {out}', logger='current')
        if self.format_only:
            return {}

        img_ids = sorted({res['img_id'] for res, _ in results})
        unknown = [i for i in img_ids if i not in coco_gt.imgs]
        if unknown:
            raise DatasetConfigError(
                f'image ids {unknown[:10]} of the evaluated samples are not in {self.ann_file}; '
                'the evaluator must use the same annotation file as the evaluated dataset.', key=ANN_FILE_KEY)
        zero = {f'{self.metric}_{name}': 0.0 for name in STAT_INDEX}
        if not records:
            print_log('CocoMetric: there are no predictions at all; every bbox mAP is 0.',
                      logger='current', level=logging.WARNING)
            return zero

        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            coco_dt = coco_gt.loadRes(records)
            evaluator = COCOeval(coco_gt, coco_dt, 'bbox')
            evaluator.params.catIds = cat_ids
            evaluator.params.imgIds = img_ids
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        print_log('\n' + log.getvalue(), logger='current', level=logging.INFO)
        return {f'{self.metric}_{name}': round(float(evaluator.stats[idx]), 3) for name, idx in STAT_INDEX.items()}

