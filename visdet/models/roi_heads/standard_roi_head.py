"""Second stage: assign and sample proposals, pool their features, classify and refine them.

mmdet's ``StandardRoIHead`` restricted to boxes (no mask head, no shared head).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData

from visdet.models.builder_utils import build_component
from visdet.models.errors import ModelConfigError
from visdet.models.task_modules.assign_result import SamplingResult
from visdet.models.utils import cfg_get
from visdet.registry import MODELS, TASK_UTILS
from visdet.structures import DetDataSample

_KEY = "model.roi_head"


def bbox2roi(bbox_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """(K, 5) RoIs ``[batch_index, x1, y1, x2, y2]`` from per-image (k_i, 4) boxes."""
    rois = [torch.cat([b.new_full((b.size(0), 1), i), b[:, :4]], dim=1) for i, b in enumerate(bbox_list)]
    return torch.cat(rois)


@MODELS.register_module()
class StandardRoIHead(BaseModule):
    """RoI extractor plus box head, with train-time assignment/sampling and test-time post-processing.

    Args:
        bbox_roi_extractor: Config of the feature pooler (``SingleRoIExtractor``).
        bbox_head: Config of the box head (``Shared2FCBBoxHead``).
        train_cfg: ``model.train_cfg.rcnn`` (assigner, sampler, pos_weight).
        test_cfg: ``model.test_cfg.rcnn`` (score_thr, nms, max_per_img).
    """

    def __init__(self, bbox_roi_extractor: dict, bbox_head: dict, mask_roi_extractor: dict | None = None,
                 mask_head: dict | None = None, shared_head: dict | None = None, train_cfg: dict | None = None,
                 test_cfg: dict | None = None, init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg)
        for name, value in (("mask_roi_extractor", mask_roi_extractor), ("mask_head", mask_head),
                            ("shared_head", shared_head)):
            if value is not None:
                raise ModelConfigError("is not supported (box detection only); remove it", f"{_KEY}.{name}")
        self.bbox_roi_extractor = build_component(bbox_roi_extractor, MODELS, f"{_KEY}.bbox_roi_extractor")
        self.bbox_head = build_component(bbox_head, MODELS, f"{_KEY}.bbox_head")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        if train_cfg is not None:
            self.bbox_assigner = build_component(cfg_get(train_cfg, "assigner", "model.train_cfg.rcnn"), TASK_UTILS,
                                                 "model.train_cfg.rcnn.assigner")
            self.bbox_sampler = build_component(cfg_get(train_cfg, "sampler", "model.train_cfg.rcnn"), TASK_UTILS,
                                                "model.train_cfg.rcnn.sampler", default_args=dict(context=self))

    def _bbox_forward(self, x: Sequence[torch.Tensor], rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.bbox_roi_extractor(x[: self.bbox_roi_extractor.num_inputs], rois)
        return self.bbox_head(feats)

    def forward(self, x: Sequence[torch.Tensor], rpn_results_list: list[InstanceData],
                data_samples: list[DetDataSample] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(cls_score, bbox_pred)`` for all proposals (``mode='tensor'``)."""
        return self._bbox_forward(x, bbox2roi([r.bboxes for r in rpn_results_list]))

    def loss(self, x: Sequence[torch.Tensor], rpn_results_list: list[InstanceData],
             data_samples: list[DetDataSample]) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``acc`` on sampled proposals."""
        if self.train_cfg is None:
            raise ValueError("StandardRoIHead.loss needs model.train_cfg.rcnn (assigner and sampler)")
        results: list[SamplingResult] = []
        for proposals, sample in zip(rpn_results_list, data_samples):
            gt = sample.gt_instances
            priors = proposals.bboxes.detach()
            gt_bboxes = gt.bboxes.to(priors.dtype)
            assign = self.bbox_assigner.assign(priors, gt_bboxes, gt.labels)
            results.append(self.bbox_sampler.sample(assign, priors, gt_bboxes, gt.labels, img_meta=sample.metainfo))
        rois = bbox2roi([r.priors for r in results])
        cls_score, bbox_pred = self._bbox_forward(x, rois)
        pos_weight = cfg_get(self.train_cfg, "pos_weight", "model.train_cfg.rcnn", -1)
        targets = self.bbox_head.get_targets(results, pos_weight)
        return self.bbox_head.loss(cls_score, bbox_pred, *targets)

    def predict(self, x: Sequence[torch.Tensor], rpn_results_list: list[InstanceData],
                data_samples: list[DetDataSample], rescale: bool = True) -> list[InstanceData]:
        """Detections per image, in original-image pixels when ``rescale``."""
        proposals = [r.bboxes for r in rpn_results_list]
        rois = bbox2roi(proposals)
        cls_score, bbox_pred = self._bbox_forward(x, rois)
        counts = [len(p) for p in proposals]
        out = []
        for i, (r, c, b) in enumerate(zip(rois.split(counts), cls_score.split(counts), bbox_pred.split(counts))):
            out.append(self.bbox_head.predict_single(r, c, b, data_samples[i].metainfo, self.test_cfg, rescale))
        return out
