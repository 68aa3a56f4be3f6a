"""Pick a fixed number of positive and negative priors at random (mmdet's ``RandomSampler``)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from mmengine.logging import MessageHub

from visdet.models.errors import ModelConfigError
from visdet.models.task_modules.assign_result import AssignResult, SamplingResult
from visdet.registry import TASK_UTILS

_KEY = "model.train_cfg.*.sampler"


def _choose(inds: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """At most ``num`` of ``inds``, uniformly without replacement."""
    if inds.numel() <= num:
        return inds
    return inds[torch.randperm(inds.numel(), device=inds.device, generator=generator)[:num]]


def image_seed(salt: str, img_meta: Mapping) -> int:
    """A seed for one image at the current training iteration, the same in every process.

    Made from the run's base seed (``torch.initial_seed()``, equal on all ranks
    unless ``randomness.diff_rank_seed``), the iteration the message hub holds,
    the image's ``img_id`` (or path) and ``salt`` (which sampler is drawing).
    """
    image = img_meta.get("img_id", img_meta.get("img_path"))
    if image is None:
        raise ValueError("seed_per_image needs 'img_id' or 'img_path' in the data sample's metainfo")
    iteration = MessageHub.get_current_instance().get_info("iter", 0)
    key = f"{torch.initial_seed()}|{iteration}|{image}|{salt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & ((1 << 63) - 1)


@TASK_UTILS.register_module()
class RandomSampler:
    """Sample ``num`` priors, at most ``num * pos_fraction`` positive, the rest negative.

    Args:
        num: Samples per image.
        pos_fraction: Upper share of positives.
        neg_pos_ub: Negatives at most this many times the positives (-1: no bound).
        add_gt_as_proposals: Prepend the ground-truth boxes as candidate positives.
        context: The head building the sampler (accepted for mmdet compatibility).
        seed_per_image: Draw each image's samples from its own generator, seeded
            by :func:`image_seed`, instead of the global torch stream. Then an
            image gets the same samples whether it shares a batch with others
            in one process or sits alone on one of several DDP ranks, which
            makes multi-process training reproduce single-process training
            (with the same global batch). Off by default, as in mmdet.
    """

    def __init__(self, num: int, pos_fraction: float, neg_pos_ub: int = -1, add_gt_as_proposals: bool = True,
                 context: object | None = None, seed_per_image: bool = False, **kwargs: object) -> None:
        if num <= 0:
            raise ModelConfigError(f"must be a positive number of samples, got {num}", f"{_KEY}.num")
        if not 0 <= pos_fraction <= 1:
            raise ModelConfigError(f"must be in [0, 1], got {pos_fraction}", f"{_KEY}.pos_fraction")
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals
        if not isinstance(seed_per_image, bool):
            raise ModelConfigError(f"must be True or False, got {seed_per_image!r}", f"{_KEY}.seed_per_image")
        self.seed_per_image = seed_per_image
        self._salt = f"{type(context).__name__}/{num}/{pos_fraction}"

    def sample(self, assign_result: AssignResult, priors: torch.Tensor, gt_bboxes: torch.Tensor,
               gt_labels: torch.Tensor, img_meta: Mapping | None = None) -> SamplingResult:
        """Sample from the ``priors`` (N, 4) that ``assign_result`` labelled.

        ``img_meta`` (the image's metainfo) is needed with ``seed_per_image``.
        """
        generator = None
        if self.seed_per_image:
            if img_meta is None:
                raise ValueError("RandomSampler(seed_per_image=True).sample needs the image's metainfo")
            generator = torch.Generator(device=priors.device).manual_seed(image_seed(self._salt, img_meta))
        priors = priors[:, :4]
        gt_flags = priors.new_zeros(priors.size(0), dtype=torch.bool)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            priors = torch.cat([gt_bboxes.to(priors.dtype), priors])
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([gt_flags.new_ones(len(gt_bboxes)), gt_flags])
        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = _choose(torch.nonzero(assign_result.gt_inds > 0).squeeze(1), num_expected_pos, generator)
        num_expected_neg = self.num - pos_inds.numel()
        if self.neg_pos_ub >= 0:
            num_expected_neg = min(num_expected_neg, int(self.neg_pos_ub * max(1, pos_inds.numel())))
        neg_inds = _choose(torch.nonzero(assign_result.gt_inds == 0).squeeze(1), num_expected_neg, generator)
        assigned = assign_result.gt_inds[pos_inds] - 1
        if gt_bboxes.numel() == 0:
            pos_gt_bboxes = gt_bboxes.new_zeros((0, 4))
        else:
            pos_gt_bboxes = gt_bboxes[assigned]
        return SamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, pos_priors=priors[pos_inds],
                              neg_priors=priors[neg_inds], pos_gt_bboxes=pos_gt_bboxes,
                              pos_gt_labels=assign_result.labels[pos_inds], pos_assigned_gt_inds=assigned,
                              pos_is_gt=gt_flags[pos_inds])
