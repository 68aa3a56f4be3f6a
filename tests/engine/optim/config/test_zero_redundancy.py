"""visdet's ZeroRedundancyOptimizer: state_dict() gathers the shards itself, on two gloo processes (CPU), with no
visdet Runner, as mmengine's subclass and its tests expect; a consolidation made beforehand is reused."""
from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer as TorchZero

from visdet.engine.optim.config.zero_redundancy import ZeroRedundancyOptimizer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _step(model: nn.Module, wrapper, rank: int) -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(rank))
    wrapper.update_params(model(x).square().mean())


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        from visdet.engine.optim import build_optim_wrapper

        model = _model()
        wrapper = build_optim_wrapper(model, dict(optimizer=dict(
            type="ZeroRedundancyOptimizer", optimizer_type="AdamW", lr=1e-2, weight_decay=0.05)))
        optimizer = wrapper.optimizer
        assert type(optimizer) is ZeroRedundancyOptimizer and isinstance(optimizer, TorchZero)
        _step(model, wrapper, rank)
        first = copy.deepcopy(optimizer.state_dict())  # every rank, no consolidate_state_dict() beforehand
        _step(model, wrapper, rank)
        optimizer.consolidate_state_dict(to=0)  # as visdet's Runner does on every rank ...
        second = copy.deepcopy(optimizer.state_dict()) if rank == 0 else None  # ... before rank 0 alone saves
        again = wrapper.state_dict()  # the wrapper's own state_dict on every rank (a fresh gather)
        # mmengine's spelling builds directly too, and loads the full state (keeping its own shard)
        direct = ZeroRedundancyOptimizer(_model().parameters(), optimizer_type="AdamW", lr=1e-2, weight_decay=0.05)
        full = [copy.deepcopy(second)]  # load_state_dict changes the dict it is given
        dist.broadcast_object_list(full, src=0)
        direct.load_state_dict(full[0])
        torch.save(dict(first=first, second=second, again=again, loaded=direct.state_dict(),
                        params=len(list(model.parameters()))), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes importing torch and visdet: ~20-30 s on 2 shared cores
def test_state_dict_consolidates_on_every_rank_without_visdets_runner(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    params = zero["params"]
    first, second, again, loaded = (zero[k]["state"] for k in ("first", "second", "again", "loaded"))
    assert len(first) == len(second) == len(loaded) == params  # rank 0 has every parameter's state, not a shard
    assert one["first"] == {}, one["first"]  # the others get nothing, as with mmengine's subclass
    assert "state" not in one["again"], one["again"]
    assert [float(state["step"]) for state in first.values()] == [1.0] * params
    assert [float(state["step"]) for state in second.values()] == [2.0] * params
    for index, state in second.items():  # the wrapper's fresh gather and the loaded copy equal the earlier one
        assert torch.equal(state["exp_avg"], again[index]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], loaded[index]["exp_avg_sq"])
