"""One rank of the 2-process gloo check of the closure driver (run by test_closure_driver.py).

    python closure_ddp_run.py RANK INIT_FILE OPTIMIZER

Each rank trains a conv-BN-linear model under mmengine's MMDistributedDataParallel on its own
batch for 3 steps; prints the largest parameter difference between the ranks and whether the
first pass of each step ran inside no_sync (the reducer's ``require_backward_grad_sync``).
"""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from mmengine.model import BaseModel, MMDistributedDataParallel
from pytorch_optimizer import SAM
from torch import nn

from visdet.engine.optim.wrappers.optim_wrapper import OptimWrapper
from visdet.engine.optim.wrappers.train_step import train_step


class Net(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 1)
        self.synced: list[bool] = []
        self.ddp: MMDistributedDataParallel | None = None

    def forward(self, inputs, targets=None, mode="loss"):
        self.synced.append(bool(self.ddp.require_backward_grad_sync))
        out = self.fc(self.bn(self.conv(inputs)).mean((2, 3))).squeeze(1)
        return {"loss": ((out - targets) ** 2).mean()}


def main() -> None:
    rank, init_file, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    net = Net()
    model = MMDistributedDataParallel(module=net)
    net.ddp = model
    if kind == "SAM":
        optimizer = SAM(net.parameters(), base_optimizer=torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    else:
        optimizer = torch.optim.LBFGS(net.parameters(), lr=0.5, max_iter=2, line_search_fn="strong_wolfe")
    wrapper = OptimWrapper(optimizer)
    gen = torch.Generator().manual_seed(rank)  # a different batch on each rank
    for _ in range(3):
        train_step(model, {"inputs": torch.randn(4, 1, 6, 6, generator=gen), "targets": torch.randn(4, generator=gen)},
                   wrapper)
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    print(f"diff={(gathered[0] - gathered[1]).abs().max().item()} synced={net.synced} moved={flat.abs().sum().item()}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
