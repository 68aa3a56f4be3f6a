"""The small conv net and the Muon + AdamW build the hybrid tests share (imported by test_routing / test_optimizer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visdet.engine.optim.hybrid import HybridOptimizer, matrix_view, route_parameters


class TinyNet(nn.Module):
    """Stem conv, BN, a hidden conv, a domain embedding, a hidden Linear and a head Linear."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.embed = nn.Embedding(4, 32)
        self.hidden = nn.Linear(16, 32)
        self.fc_cls = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(self.conv(x)).mean((2, 3))
        x = F.relu(self.hidden(x) + self.embed(domain))
        return self.fc_cls(x)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(16, 3, 8, 8, generator=gen)
    domain = torch.randint(0, 4, (16,), generator=gen)
    labels = torch.randint(0, 5, (16,), generator=gen)
    return x, domain, labels


def loss_of(model: nn.Module) -> torch.Tensor:
    x, domain, labels = batch()
    return F.cross_entropy(model(x, domain), labels)


def build_hybrid(model: nn.Module, muon_lr: float = 0.02, adamw_lr: float = 0.01) -> HybridOptimizer:
    """What the constructor does: route, view the N-D matrix params, build Muon + AdamW."""
    routes = route_parameters(model, flatten_conv=True)
    params = dict(model.named_parameters())
    matrix, fallback, views = [], [], {}
    for name, route in routes.items():
        param = params[name]
        if route.route == "matrix":
            if param.ndim > 2:
                view = matrix_view(param)
                views[view] = param
                param = view
            matrix.append(param)
        else:
            fallback.append(param)
    return HybridOptimizer(
        {
            "matrix": torch.optim.Muon(matrix, lr=muon_lr, weight_decay=0.0),
            "fallback": torch.optim.AdamW(fallback, lr=adamw_lr, weight_decay=0.0),
        },
        views=views,
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
