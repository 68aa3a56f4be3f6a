"""CrossEntropyLoss (sigmoid and softmax), L1Loss and SmoothL1Loss against torch, with weights and avg_factor."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visdet.models import CrossEntropyLoss, L1Loss, ModelConfigError, SmoothL1Loss


def test_sigmoid_ce_treats_label_num_classes_as_background():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    labels = torch.tensor([0, 1, 1])  # 0: object, 1 (= num_classes): background
    loss = CrossEntropyLoss(use_sigmoid=True)(logits, labels, torch.ones(3), avg_factor=3)
    expected = F.binary_cross_entropy_with_logits(logits.view(-1), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.isclose(loss, expected, atol=1e-6)


def test_softmax_ce_with_weights_avg_factor_and_loss_weight():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 3, 1, 2])
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    loss = CrossEntropyLoss(loss_weight=2.0)(logits, labels, weights, avg_factor=4)
    per = F.cross_entropy(logits, labels, reduction="none")
    assert torch.isclose(loss, 2.0 * (per * weights).sum() / 4, atol=1e-5)
    assert torch.isclose(CrossEntropyLoss()(logits, labels), per.mean(), atol=1e-6)


def test_l1_and_smooth_l1():
    pred = torch.tensor([[0.0, 0.5, 2.0, -3.0]])
    target = torch.zeros(1, 4)
    assert torch.isclose(L1Loss()(pred, target, avg_factor=2), torch.tensor(5.5 / 2))
    smooth = SmoothL1Loss(beta=1.0, loss_weight=1.0)(pred, target, reduction_override="none")
    assert torch.allclose(smooth, F.smooth_l1_loss(pred, target, beta=1.0, reduction="none"))
    weights = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert torch.isclose(SmoothL1Loss(beta=1.0)(pred, target, weights, avg_factor=1), torch.tensor(0.125))
    assert L1Loss()(pred[:0], target[:0]).item() == 0.0


def test_bad_loss_options_are_config_errors():
    with pytest.raises(ModelConfigError, match="reduction"):
        L1Loss(reduction="avg")
    with pytest.raises(ModelConfigError, match="beta"):
        SmoothL1Loss(beta=0)
