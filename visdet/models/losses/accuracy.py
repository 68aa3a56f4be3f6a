"""Top-1 classification accuracy in percent, logged as ``acc`` like mmdet."""
from __future__ import annotations

import torch


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Percentage of rows of ``pred`` (N, C) whose arg-max equals ``target`` (N,)."""
    if pred.size(0) == 0:
        return pred.new_tensor(0.0)
    with torch.no_grad():
        return (pred.argmax(dim=1) == target).float().mean() * 100.0
