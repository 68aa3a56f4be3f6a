"""Region Proposal Network head: objectness and box deltas per anchor, losses and proposals.

Written to mmdet's ``RPNHead``/``AnchorHead`` semantics (anchor layout,
targets, ``avg_factor``, per-level ``nms_pre`` then level-aware NMS), since
torchvision's ``RegionProposalNetwork`` differs in sampling, loss
normalisation and box coding. Targets are computed for all levels at once and
losses only over sampled anchors (the others have weight 0), which is the same
value mmdet computes, with less work.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import nn
from torchvision.ops import batched_nms

from visdet.models.builder_utils import build_component
from visdet.models.errors import ModelConfigError
from visdet.models.utils import cfg_get, nms_iou_threshold
from visdet.registry import MODELS, TASK_UTILS
from visdet.structures import DetDataSample

_KEY = "model.rpn_head"


@MODELS.register_module()
class RPNHead(BaseModule):
    """3x3 conv + ReLU shared by a 1x1 objectness conv and a 1x1 box-delta conv, on every level.

    Args:
        in_channels: Channels of the input maps.
        feat_channels: Channels of the shared 3x3 conv.
        num_classes: 1 (object vs background).
        anchor_generator, bbox_coder, loss_cls, loss_bbox: Configs of the parts.
        train_cfg: ``model.train_cfg.rpn`` (assigner, sampler, allowed_border, pos_weight).
        test_cfg: ``model.test_cfg.rpn`` (nms_pre, max_per_img, nms, min_bbox_size).
    """

    def __init__(self, in_channels: int, feat_channels: int = 256, num_classes: int = 1, num_convs: int = 1,
                 anchor_generator: dict | None = None, bbox_coder: dict | None = None,
                 loss_cls: dict | None = None, loss_bbox: dict | None = None, reg_decoded_bbox: bool = False,
                 train_cfg: dict | None = None, test_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg)
        self.num_classes = num_classes
        self.prior_generator = build_component(anchor_generator, TASK_UTILS, f"{_KEY}.anchor_generator")
        self.bbox_coder = build_component(bbox_coder or dict(type="DeltaXYWHBBoxCoder"), TASK_UTILS,
                                          f"{_KEY}.bbox_coder")
        self.loss_cls = build_component(loss_cls or dict(type="CrossEntropyLoss", use_sigmoid=True), MODELS,
                                        f"{_KEY}.loss_cls")
        self.loss_bbox = build_component(loss_bbox or dict(type="L1Loss"), MODELS, f"{_KEY}.loss_bbox")
        self.use_sigmoid = getattr(self.loss_cls, "use_sigmoid", False)
        self.cls_out_channels = num_classes if self.use_sigmoid else num_classes + 1
        if reg_decoded_bbox:
            raise ModelConfigError("reg_decoded_bbox=True (IoU-style box losses) is not supported; use False",
                                   f"{_KEY}.reg_decoded_bbox")
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        if train_cfg is not None:
            self.assigner = build_component(cfg_get(train_cfg, "assigner", "model.train_cfg.rpn"), TASK_UTILS,
                                            "model.train_cfg.rpn.assigner")
            self.sampler = build_component(cfg_get(train_cfg, "sampler", "model.train_cfg.rpn"), TASK_UTILS,
                                           "model.train_cfg.rpn.sampler", default_args=dict(context=self))
        num_anchors = self.prior_generator.num_base_anchors[0]
        self.num_anchors = num_anchors
        convs = []
        for i in range(num_convs):
            convs += [nn.Conv2d(in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1),
                      nn.ReLU(inplace=True)]
        self.rpn_conv = nn.Sequential(*convs)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)
        for conv in self.modules():  # mmdet: Normal(std=0.01) for every conv
            if isinstance(conv, nn.Conv2d):
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)

    def forward(self, x: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level: objectness (B, A * C, H, W) and deltas (B, A * 4, H, W)."""
        cls_scores, bbox_preds = [], []
        for feat in x:
            feat = self.rpn_conv(feat)
            cls_scores.append(self.rpn_cls(feat))
            bbox_preds.append(self.rpn_reg(feat))
        return cls_scores, bbox_preds

    # ------------------------------------------------------------------ training
    def loss_and_predict(self, x: Sequence[torch.Tensor], data_samples: list[DetDataSample],
                         proposal_cfg: dict | None) -> tuple[dict[str, torch.Tensor], list[InstanceData]]:
        """RPN losses and (detached) proposals for the RoI head."""
        cls_scores, bbox_preds = self(x)
        metas = [s.metainfo for s in data_samples]
        losses = self.loss_by_feat(cls_scores, bbox_preds, [s.gt_instances for s in data_samples], metas)
        proposals = self.predict_by_feat([c.detach() for c in cls_scores], [b.detach() for b in bbox_preds],
                                         metas, proposal_cfg, "model.train_cfg.rpn_proposal")
        return losses, proposals

    def loss(self, x: Sequence[torch.Tensor], data_samples: list[DetDataSample]) -> dict[str, torch.Tensor]:
        cls_scores, bbox_preds = self(x)
        return self.loss_by_feat(cls_scores, bbox_preds, [s.gt_instances for s in data_samples],
                                 [s.metainfo for s in data_samples])

    def _flat_anchors(self, cls_scores: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        per_level = self.prior_generator.grid_priors(sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        return per_level, torch.cat(per_level)

    def loss_by_feat(self, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor],
                     gt_instances: list[InstanceData], img_metas: list[dict]) -> dict[str, torch.Tensor]:
        """``loss_rpn_cls`` and ``loss_rpn_bbox`` over the sampled anchors of all levels and images."""
        if self.train_cfg is None:
            raise ValueError("RPNHead.loss needs model.train_cfg.rpn (assigner and sampler)")
        num_imgs = cls_scores[0].size(0)
        _, anchors = self._flat_anchors(cls_scores)
        cls_flat = torch.cat([c.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
                              for c in cls_scores], dim=1)
        reg_flat = torch.cat([b.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4) for b in bbox_preds], dim=1)
        allowed_border = cfg_get(self.train_cfg, "allowed_border", "model.train_cfg.rpn", -1)
        pos_weight = cfg_get(self.train_cfg, "pos_weight", "model.train_cfg.rpn", -1)
        cls_preds, cls_labels, cls_weights, reg_preds, reg_targets = [], [], [], [], []
        avg_factor = 0
        for i in range(num_imgs):
            gt = gt_instances[i]
            gt_bboxes = gt.bboxes.to(anchors.dtype)
            valid = self._inside_flags(anchors, img_metas[i]["img_shape"], allowed_border)
            valid_inds = None if valid is None else torch.nonzero(valid).squeeze(1)
            cand = anchors if valid_inds is None else anchors[valid_inds]
            gt_labels = torch.zeros(len(gt_bboxes), dtype=torch.long, device=anchors.device)
            assign = self.assigner.assign(cand, gt_bboxes, gt_labels)
            res = self.sampler.sample(assign, cand, gt_bboxes, gt_labels, img_meta=img_metas[i])
            pos, neg = res.pos_inds, res.neg_inds
            if valid_inds is not None:
                pos, neg = valid_inds[pos], valid_inds[neg]
            sampled = torch.cat([pos, neg])
            labels = torch.full((sampled.numel(),), self.num_classes, dtype=torch.long, device=anchors.device)
            labels[: pos.numel()] = 0
            weights = torch.ones(sampled.numel(), device=anchors.device)
            if pos_weight > 0:
                weights[: pos.numel()] = pos_weight
            cls_preds.append(cls_flat[i, sampled])
            cls_labels.append(labels)
            cls_weights.append(weights)
            reg_preds.append(reg_flat[i, pos])
            reg_targets.append(self.bbox_coder.encode(res.pos_priors, res.pos_gt_bboxes))
            avg_factor += res.avg_factor
        avg = max(avg_factor, 1)
        loss_cls = self.loss_cls(torch.cat(cls_preds), torch.cat(cls_labels), torch.cat(cls_weights), avg_factor=avg)
        reg_pred, reg_target = torch.cat(reg_preds), torch.cat(reg_targets)
        loss_bbox = self.loss_bbox(reg_pred, reg_target, avg_factor=avg)
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    @staticmethod
    def _inside_flags(anchors: torch.Tensor, img_shape: Sequence[int], allowed_border: float) -> torch.Tensor | None:
        """Anchors inside the image by ``allowed_border`` pixels; None (all) when it is negative."""
        if allowed_border < 0:
            return None
        h, w = img_shape[:2]
        return ((anchors[:, 0] >= -allowed_border) & (anchors[:, 1] >= -allowed_border)
                & (anchors[:, 2] < w + allowed_border) & (anchors[:, 3] < h + allowed_border))

    # ------------------------------------------------------------------ inference
    def predict(self, x: Sequence[torch.Tensor], data_samples: list[DetDataSample],
                rescale: bool = False) -> list[InstanceData]:
        cls_scores, bbox_preds = self(x)
        return self.predict_by_feat(cls_scores, bbox_preds, [s.metainfo for s in data_samples], self.test_cfg,
                                    "model.test_cfg.rpn", rescale=rescale)

    def predict_by_feat(self, cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor],
                        img_metas: list[dict], cfg: dict | None, key: str, rescale: bool = False) -> list[InstanceData]:
        """Proposals per image: top ``nms_pre`` per level, decode, size filter, level-wise NMS, ``max_per_img``."""
        if cfg is None:
            raise ValueError(f"{key} is needed to produce proposals (nms_pre, max_per_img, nms)")
        nms_pre = cfg_get(cfg, "nms_pre", key, -1)
        max_per_img = cfg_get(cfg, "max_per_img", key, 1000)
        min_size = cfg_get(cfg, "min_bbox_size", key, 0)
        iou_thr = nms_iou_threshold(cfg_get(cfg, "nms", key), key)
        per_level, _ = self._flat_anchors(cls_scores)
        num_imgs = cls_scores[0].size(0)
        # Scores, deltas and anchors of the top-k per level, for all images at once.
        scores_l, deltas_l, anchors_l, levels_l = [], [], [], []
        for lvl, (cls, reg, anc) in enumerate(zip(cls_scores, bbox_preds, per_level)):
            cls = cls.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
            scores = cls.sigmoid()[..., 0] if self.use_sigmoid else cls.softmax(-1)[..., 0]
            reg = reg.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4)
            if 0 < nms_pre < scores.size(1):
                scores, idx = scores.topk(nms_pre, dim=1)
                reg = torch.gather(reg, 1, idx[..., None].expand(-1, -1, 4))
                anc = anc[idx]
            else:
                anc = anc[None].expand(num_imgs, -1, -1)
            scores_l.append(scores)
            deltas_l.append(reg)
            anchors_l.append(anc)
            levels_l.append(torch.full((scores.size(1),), lvl, dtype=torch.long, device=scores.device))
        scores, deltas = torch.cat(scores_l, 1), torch.cat(deltas_l, 1)
        anchors, levels = torch.cat(anchors_l, 1), torch.cat(levels_l)
        results = []
        for i in range(num_imgs):
            boxes = self.bbox_coder.decode(anchors[i], deltas[i], max_shape=img_metas[i]["img_shape"])
            s, lv = scores[i], levels
            if min_size >= 0:
                w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
                keep = (w > min_size) & (h > min_size)
                if not bool(keep.all()):
                    boxes, s, lv = boxes[keep], s[keep], lv[keep]
            keep = batched_nms(boxes, s, lv, iou_thr)[:max_per_img]
            boxes, s = boxes[keep], s[keep]
            if rescale:
                factor = boxes.new_tensor(img_metas[i]["scale_factor"]).repeat(2)
                boxes = boxes / factor
            results.append(InstanceData(bboxes=boxes, scores=s,
                                        labels=torch.zeros(len(s), dtype=torch.long, device=s.device)))
        return results
