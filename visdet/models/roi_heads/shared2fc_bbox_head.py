"""Box head on pooled RoI features: two shared fully connected layers, then class and box layers.

Follows mmdet's ``Shared2FCBBoxHead``/``BBoxHead``: background is the *last*
class index, the box layer predicts 4 deltas per class unless
``reg_class_agnostic``, losses are averaged as mmdet averages them, and
prediction is softmax, per-class decode, score threshold and per-class NMS.
"""
from __future__ import annotations

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import nn
from torchvision.ops import batched_nms

from visdet.models.builder_utils import build_component
from visdet.models.errors import ModelConfigError
from visdet.models.losses import accuracy
from visdet.models.task_modules.assign_result import SamplingResult
from visdet.models.utils import cfg_get, nms_iou_threshold
from visdet.registry import MODELS, TASK_UTILS

_KEY = "model.roi_head.bbox_head"


@MODELS.register_module()
class Shared2FCBBoxHead(BaseModule):
    """flatten -> fc -> ReLU -> fc -> ReLU -> (cls fc: K + 1, reg fc: 4 K or 4).

    Args:
        in_channels: Channels of the RoI features.
        fc_out_channels: Width of the shared fcs.
        roi_feat_size: Side of the pooled features.
        num_classes: Foreground classes K.
        bbox_coder, loss_cls, loss_bbox: Configs of the parts.
        reg_class_agnostic: One box per RoI instead of one per class.
    """

    def __init__(self, in_channels: int = 256, fc_out_channels: int = 1024, roi_feat_size: int | tuple[int, int] = 7,
                 num_classes: int = 80, bbox_coder: dict | None = None, reg_class_agnostic: bool = False,
                 reg_decoded_bbox: bool = False, loss_cls: dict | None = None, loss_bbox: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg)
        if num_classes < 1:
            raise ModelConfigError(f"must be >= 1, got {num_classes}", f"{_KEY}.num_classes")
        if reg_decoded_bbox:
            raise ModelConfigError("reg_decoded_bbox=True is not supported; use False", f"{_KEY}.reg_decoded_bbox")
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.bbox_coder = build_component(bbox_coder or dict(type="DeltaXYWHBBoxCoder",
                                                             target_stds=[0.1, 0.1, 0.2, 0.2]),
                                          TASK_UTILS, f"{_KEY}.bbox_coder")
        self.loss_cls = build_component(loss_cls or dict(type="CrossEntropyLoss"), MODELS, f"{_KEY}.loss_cls")
        if getattr(self.loss_cls, "use_sigmoid", False):
            raise ModelConfigError("use_sigmoid=True is not supported for the box head's softmax classifier",
                                   f"{_KEY}.loss_cls.use_sigmoid")
        self.loss_bbox = build_component(loss_bbox or dict(type="L1Loss"), MODELS, f"{_KEY}.loss_bbox")
        side = (roi_feat_size, roi_feat_size) if isinstance(roi_feat_size, int) else tuple(roi_feat_size)
        flat = in_channels * side[0] * side[1]
        self.shared_fcs = nn.ModuleList([nn.Linear(flat, fc_out_channels), nn.Linear(fc_out_channels, fc_out_channels)])
        self.relu = nn.ReLU(inplace=True)
        self.fc_cls = nn.Linear(fc_out_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_out_channels, 4 if reg_class_agnostic else 4 * num_classes)
        for fc in self.shared_fcs:  # mmdet: Xavier-uniform shared fcs, Normal(0.01 / 0.001) for cls / reg
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (K_rois, K + 1) and deltas (K_rois, 4 K) of pooled features (K_rois, C, h, w)."""
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = self.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)

    def get_targets(self, sampling_results: list[SamplingResult], pos_weight: float = -1
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Labels (background = K), label weights, delta targets and their weights, all images concatenated."""
        labels, label_w, targets, target_w = [], [], [], []
        for res in sampling_results:
            num_pos, num = res.num_pos, res.num_pos + res.num_neg
            device = res.pos_priors.device
            lab = torch.full((num,), self.num_classes, dtype=torch.long, device=device)
            lab[:num_pos] = res.pos_gt_labels
            lw = torch.ones(num, device=device)
            if pos_weight > 0:
                lw[:num_pos] = pos_weight
            tgt = res.pos_priors.new_zeros(num, 4)
            tw = res.pos_priors.new_zeros(num, 4)
            if num_pos > 0:
                tgt[:num_pos] = self.bbox_coder.encode(res.pos_priors, res.pos_gt_bboxes)
                tw[:num_pos] = 1.0
            labels.append(lab)
            label_w.append(lw)
            targets.append(tgt)
            target_w.append(tw)
        return torch.cat(labels), torch.cat(label_w), torch.cat(targets), torch.cat(target_w)

    def loss(self, cls_score: torch.Tensor, bbox_pred: torch.Tensor, labels: torch.Tensor,
             label_weights: torch.Tensor, bbox_targets: torch.Tensor, bbox_weights: torch.Tensor
             ) -> dict[str, torch.Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``acc`` (percent), normalised as in mmdet."""
        avg = max(float((label_weights > 0).sum()), 1.0)
        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg)
        pos = (labels >= 0) & (labels < self.num_classes)
        if bool(pos.any()):
            if self.reg_class_agnostic:
                pos_pred = bbox_pred.view(-1, 4)[pos]
            else:
                pos_pred = bbox_pred.view(bbox_pred.size(0), -1, 4)[pos, labels[pos]]
            loss_bbox = self.loss_bbox(pos_pred, bbox_targets[pos], bbox_weights[pos],
                                       avg_factor=bbox_targets.size(0))
        else:
            loss_bbox = bbox_pred[pos].sum()
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, acc=accuracy(cls_score, labels))

    def predict_single(self, rois: torch.Tensor, cls_score: torch.Tensor, bbox_pred: torch.Tensor,
                       img_meta: dict, cfg: dict | None, rescale: bool = True) -> InstanceData:
        """Detections of one image from its RoIs (K, 5) and head outputs."""
        key = "model.test_cfg.rcnn"
        scores = cls_score.softmax(-1)
        boxes = self.bbox_coder.decode(rois[:, 1:], bbox_pred, max_shape=img_meta["img_shape"])
        num_rois, width = boxes.shape
        if rescale:
            factor = boxes.new_tensor(img_meta["scale_factor"]).repeat(2)
            boxes = (boxes.view(num_rois, width // 4, 4) / factor).view(num_rois, width)
            if "ori_shape" in img_meta:
                h, w = img_meta["ori_shape"][:2]
                boxes = boxes.view(num_rois, width // 4, 4)
                boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                                     boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], -1).view(num_rois, width)
        if cfg is None:  # raw per-RoI output, as mmdet does without a test config
            return InstanceData(bboxes=boxes, scores=scores)
        score_thr = cfg_get(cfg, "score_thr", key, 0.05)
        max_per_img = cfg_get(cfg, "max_per_img", key, 100)
        iou_thr = nms_iou_threshold(cfg_get(cfg, "nms", key), key)
        k = self.num_classes
        boxes = boxes.view(num_rois, width // 4, 4).expand(num_rois, k, 4).reshape(-1, 4)
        fg = scores[:, :-1].reshape(-1)
        labels = torch.arange(k, device=scores.device).repeat(num_rois)
        keep = torch.nonzero(fg > score_thr).squeeze(1)
        boxes, fg, labels = boxes[keep], fg[keep], labels[keep]
        keep = batched_nms(boxes, fg, labels, iou_thr)
        if max_per_img > 0:
            keep = keep[:max_per_img]
        return InstanceData(bboxes=boxes[keep], scores=fg[keep], labels=labels[keep])
