"""Anchors, box coding, assignment and sampling (registered in TASK_UTILS)."""
from visdet.models.task_modules.anchor_generator import AnchorGenerator
from visdet.models.task_modules.assign_result import AssignResult, SamplingResult
from visdet.models.task_modules.bbox_coder import DeltaXYWHBBoxCoder
from visdet.models.task_modules.max_iou_assigner import MaxIoUAssigner
from visdet.models.task_modules.random_sampler import RandomSampler

__all__ = ["AnchorGenerator", "AssignResult", "DeltaXYWHBBoxCoder", "MaxIoUAssigner", "RandomSampler",
           "SamplingResult"]
