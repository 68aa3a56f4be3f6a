"""Two-stage detectors: backbone, neck, RPN and RoI head, as mmdet's ``TwoStageDetector``.

An mmengine ``BaseModel`` so the runner drives it with
``forward(inputs, data_samples, mode)`` in 'loss', 'predict' and 'tensor' modes.
"""
from __future__ import annotations

import copy

import torch
from mmengine.model import BaseModel

from visdet.models.builder_utils import build_component
from visdet.models.errors import ModelConfigError
from visdet.registry import MODELS
from visdet.structures import DetDataSample


def _sub(cfg: dict | None, name: str) -> dict | None:
    return None if cfg is None else cfg.get(name)


@MODELS.register_module()
class TwoStageDetector(BaseModel):
    """Backbone -> neck -> RPN proposals -> RoI head.

    ``train_cfg.rpn``/``test_cfg.rpn`` go to the RPN head, ``train_cfg.rcnn``/
    ``test_cfg.rcnn`` to the RoI head, and ``train_cfg.rpn_proposal`` controls
    the proposals made during training, as in mmdet.
    """

    def __init__(self, backbone: dict, neck: dict | None = None, rpn_head: dict | None = None,
                 roi_head: dict | None = None, train_cfg: dict | None = None, test_cfg: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | list | None = None) -> None:
        if isinstance(data_preprocessor, dict):
            data_preprocessor = build_component(data_preprocessor, MODELS, "model.data_preprocessor")
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if rpn_head is None or roi_head is None:
            missing = "rpn_head" if rpn_head is None else "roi_head"
            raise ModelConfigError("is required by a two-stage detector", f"model.{missing}")
        self.backbone = build_component(backbone, MODELS, "model.backbone")
        self.neck = build_component(neck, MODELS, "model.neck") if neck is not None else None
        rpn_cfg = copy.deepcopy(dict(rpn_head))
        rpn_cfg.update(train_cfg=_sub(train_cfg, "rpn"), test_cfg=_sub(test_cfg, "rpn"))
        rpn_cfg.setdefault("num_classes", 1)
        self.rpn_head = build_component(rpn_cfg, MODELS, "model.rpn_head")
        roi_cfg = copy.deepcopy(dict(roi_head))
        roi_cfg.update(train_cfg=_sub(train_cfg, "rcnn"), test_cfg=_sub(test_cfg, "rcnn"))
        self.roi_head = build_component(roi_cfg, MODELS, "model.roi_head")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg

    def extract_feat(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Backbone (and neck) features of a (B, 3, H, W) batch."""
        x = self.backbone(inputs)
        return self.neck(x) if self.neck is not None else x

    def forward(self, inputs: torch.Tensor, data_samples: list[DetDataSample] | None = None,
                mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        if mode == "tensor":
            return self._forward(inputs, data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: torch.Tensor, data_samples: list[DetDataSample]) -> dict[str, torch.Tensor]:
        """RPN losses (``loss_rpn_*``) and RoI head losses (``loss_cls``, ``loss_bbox``, ``acc``)."""
        if self.train_cfg is None:
            raise ModelConfigError("is needed for mode='loss' (rpn, rpn_proposal and rcnn)", "model.train_cfg")
        x = self.extract_feat(inputs)
        proposal_cfg = self.train_cfg.get("rpn_proposal", _sub(self.test_cfg, "rpn"))
        losses, proposals = self.rpn_head.loss_and_predict(x, data_samples, proposal_cfg)
        losses.update(self.roi_head.loss(x, proposals, data_samples))
        return losses

    def predict(self, inputs: torch.Tensor, data_samples: list[DetDataSample],
                rescale: bool = True) -> list[DetDataSample]:
        """Samples with ``pred_instances`` (bboxes, scores, labels), in original-image pixels when ``rescale``."""
        x = self.extract_feat(inputs)
        proposals = self.rpn_head.predict(x, data_samples, rescale=False)
        preds = self.roi_head.predict(x, proposals, data_samples, rescale=rescale)
        for sample, pred in zip(data_samples, preds):
            sample.pred_instances = pred
        return data_samples

    def _forward(self, inputs: torch.Tensor, data_samples: list[DetDataSample] | None = None) -> tuple:
        """``((rpn_cls_scores, rpn_bbox_preds), (cls_score, bbox_pred))`` without post-processing."""
        x = self.extract_feat(inputs)
        cls_scores, bbox_preds = self.rpn_head(x)
        if data_samples is None:
            h, w = inputs.shape[-2:]
            metas = [dict(img_shape=(h, w), scale_factor=(1.0, 1.0))] * inputs.size(0)
        else:
            metas = [s.metainfo for s in data_samples]
        proposals = self.rpn_head.predict_by_feat(cls_scores, bbox_preds, metas, _sub(self.test_cfg, "rpn"),
                                                  "model.test_cfg.rpn")
        return (tuple(cls_scores), tuple(bbox_preds)), self.roi_head.forward(x, proposals)
