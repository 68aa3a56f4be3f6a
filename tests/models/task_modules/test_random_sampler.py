"""RandomSampler: counts, positive fraction, neg_pos_ub, ground truths as proposals."""
from __future__ import annotations

import torch

from visdet.models import RandomSampler
from visdet.models.task_modules import AssignResult


def _assign(num_pos: int, num_neg: int, num_ignored: int = 0) -> tuple[AssignResult, torch.Tensor]:
    gt_inds = torch.cat([torch.ones(num_pos, dtype=torch.long), torch.zeros(num_neg, dtype=torch.long),
                         -torch.ones(num_ignored, dtype=torch.long)])
    labels = torch.where(gt_inds > 0, 1, -1)
    priors = torch.rand(len(gt_inds), 2).repeat(1, 2) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    return AssignResult(1, gt_inds, torch.zeros(len(gt_inds)), labels), priors


GT = torch.tensor([[0.0, 0.0, 5.0, 5.0]])
GT_LABEL = torch.tensor([1])


def test_counts_respect_num_and_pos_fraction():
    sampler = RandomSampler(num=64, pos_fraction=0.25, add_gt_as_proposals=False)
    assign, priors = _assign(100, 300, 20)
    res = sampler.sample(assign, priors, GT, GT_LABEL)
    assert res.num_pos == 16 and res.num_neg == 48
    assert bool((assign.gt_inds[res.pos_inds] > 0).all()) and bool((assign.gt_inds[res.neg_inds] == 0).all())
    assert len(set(res.neg_inds.tolist())) == 48  # without replacement
    assert res.priors.shape == (64, 4) and torch.equal(res.pos_gt_bboxes, GT.expand(16, 4))


def test_few_positives_are_filled_with_negatives_and_neg_pos_ub_caps_them():
    assign, priors = _assign(3, 300)
    res = RandomSampler(num=64, pos_fraction=0.5, add_gt_as_proposals=False).sample(assign, priors, GT, GT_LABEL)
    assert (res.num_pos, res.num_neg) == (3, 61)
    assign, priors = _assign(3, 300)
    res = RandomSampler(num=64, pos_fraction=0.5, neg_pos_ub=2, add_gt_as_proposals=False).sample(
        assign, priors, GT, GT_LABEL)
    assert (res.num_pos, res.num_neg) == (3, 6)


def test_ground_truths_are_added_as_positive_proposals():
    assign, priors = _assign(0, 50)
    res = RandomSampler(num=16, pos_fraction=0.25, add_gt_as_proposals=True).sample(assign, priors, GT, GT_LABEL)
    assert res.num_pos == 1 and res.pos_is_gt.tolist() == [True]
    assert torch.equal(res.pos_priors, GT) and res.pos_gt_labels.tolist() == [1]
    assert res.num_neg == 15


def _seeded_draw(img_id: int, iteration: int, sampler: RandomSampler | None = None) -> torch.Tensor:
    from mmengine.logging import MessageHub

    MessageHub.get_current_instance().update_info("iter", iteration)
    sampler = sampler or RandomSampler(num=32, pos_fraction=0.25, add_gt_as_proposals=False, seed_per_image=True)
    torch.manual_seed(0)
    assign, priors = _assign(100, 300)
    res = sampler.sample(assign, priors, GT, GT_LABEL, img_meta={"img_id": img_id})
    return torch.cat([res.pos_inds, res.neg_inds])


def test_seed_per_image_depends_on_image_and_iteration_not_on_the_global_stream():
    first = _seeded_draw(7, 3)
    torch.rand(1000)  # whatever else drew from the global stream in between does not matter
    assert torch.equal(first, _seeded_draw(7, 3))
    assert not torch.equal(first, _seeded_draw(8, 3))  # another image
    assert not torch.equal(first, _seeded_draw(7, 4))  # another iteration
    torch.manual_seed(0)  # the sampler itself leaves the global stream alone
    assign, priors = _assign(100, 300)
    before = torch.get_rng_state()
    RandomSampler(num=32, pos_fraction=0.25, add_gt_as_proposals=False, seed_per_image=True).sample(
        assign, priors, GT, GT_LABEL, img_meta={"img_id": 1})
    assert torch.equal(before, torch.get_rng_state())


def test_seed_per_image_is_validated_and_needs_the_metainfo():
    import pytest

    from visdet.models.errors import ModelConfigError

    with pytest.raises(ModelConfigError, match="seed_per_image"):
        RandomSampler(num=8, pos_fraction=0.5, seed_per_image="yes")
    assign, priors = _assign(10, 30)
    with pytest.raises(ValueError, match="metainfo"):
        RandomSampler(num=8, pos_fraction=0.5, seed_per_image=True).sample(assign, priors, GT, GT_LABEL)
