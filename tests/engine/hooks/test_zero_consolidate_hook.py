"""ZeroConsolidateHook: mmengine's plain Runner (not visdet's) with ZeroRedundancyOptimizer on two gloo processes
(CPU) saves a checkpoint holding the full optimizer state without hanging, and a run resumed from it takes the same
next step. The shipped default_runtime hooks are used as they are."""
from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import DataLoader

from testutils import REPO

RUNTIME = REPO / "configs" / "_base_" / "default_runtime.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ToyModel(BaseModel):
    """Two linear layers; each rank's input depends on the batch index and the rank (DDP averages the grads)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, index: torch.Tensor, mode: str = "loss") -> dict:
        seed = int(index[0]) * 10 + dist.get_rank()
        x = torch.randn(len(index), 4, generator=torch.Generator().manual_seed(seed))
        return dict(loss=self.net(x).square().mean())


class Recorder(Hook):
    """The parameters after each iteration."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.params: dict[int, list[torch.Tensor]] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.params[runner.iter + 1] = [p.detach().clone() for p in runner.model.parameters()]


def _runner(work_dir: str, max_iters: int, resume_from: str | None, custom_hooks: list):
    from mmengine.runner import Runner

    runtime = Config.fromfile(str(RUNTIME))
    recorder = Recorder()
    default_hooks = dict(runtime.default_hooks, checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                         logger=dict(type="LoggerHook", interval=1))
    loader = DataLoader(list(range(16)), batch_size=2, collate_fn=lambda batch: dict(index=torch.tensor(batch)))
    runner = Runner(
        model=ToyModel(), work_dir=work_dir, train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW", lr=1e-2,
                                          weight_decay=0.05)),
        default_hooks=default_hooks, custom_hooks=[*custom_hooks, recorder], default_scope="visdet",
        launcher="pytorch", cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None)),  # CPU
        env_cfg=dict(dist_cfg=dict(backend="gloo"), mp_cfg=dict(mp_start_method="spawn")),
        log_processor=dict(by_epoch=False, window_size=1), load_from=resume_from, resume=resume_from is not None,
        experiment_name=os.path.basename(work_dir))
    assert type(runner) is Runner  # mmengine's plain Runner, not visdet's subclass
    return runner, recorder


def _worker(rank: int, port: int, out: str, with_hook: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)  # mmengine's init_dist would call torch.cuda.set_device
    hooks = list(Config.fromfile(str(RUNTIME)).custom_hooks)
    if not with_hook:
        hooks = [h for h in hooks if h["type"] != "ZeroConsolidateHook"]
    runner, first = _runner(f"{out}/first", 3, None, hooks)
    runner.train()
    resumed, second = _runner(f"{out}/resumed", 3, f"{out}/first/iter_2.pth", hooks)
    resumed.train()
    if rank == 0:
        torch.save(dict(first=first.params, resumed=second.params,
                        optimizer=type(runner.optim_wrapper.optimizer).__module__), f"{out}/rank0.pt")
    dist.destroy_process_group()


def _spawn(tmp_path, with_hook: bool, timeout: float) -> bool:
    """Whether both processes finished within ``timeout`` seconds (they are killed otherwise)."""
    context = mp.start_processes(_worker, args=(_free_port(), str(tmp_path), with_hook), nprocs=2,
                                 start_method="spawn", join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            return False
    return True


@pytest.mark.slow  # two spawned processes importing torch, mmengine and visdet: ~20 s on 2 shared cores
def test_mmengines_runner_saves_and_resumes_zero_with_the_default_runtime_hooks(tmp_path):
    assert _spawn(tmp_path, with_hook=True, timeout=120), "the ZeRO checkpoint save hung"
    saved = torch.load(tmp_path / "first" / "iter_2.pth", weights_only=False)
    state = saved["optimizer"]["state"]
    assert len(state) == 4  # every parameter's state on rank 0, not its shard
    assert all(float(s["step"]) == 2.0 and s["exp_avg"].abs().sum() > 0 for s in state.values())
    assert {"param_groups", "state"} <= saved["optimizer"].keys()
    assert torch.load(tmp_path / "first" / "iter_3.pth", weights_only=False)["meta"]["iter"] == 3  # the last save
    records = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert records["optimizer"] == "visdet.engine.optim.config.zero_redundancy"
    assert list(records["resumed"]) == [3]  # it resumed at iteration 2 and took one step
    for got, expected in zip(records["resumed"][3], records["first"][3]):
        assert torch.equal(got, expected)  # the same step as the run that was not interrupted
    assert not torch.equal(records["first"][2][0], records["first"][3][0])  # and that step moved the weights


def test_one_gather_per_save_with_the_optimizer_and_none_without_zero(tmp_path):
    """In one process (a world of 1): the hook's gather and visdet's Runner's make one, and only when it is stale."""
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper

    from visdet.engine.hooks.zero_consolidate_hook import ZeroConsolidateHook
    from visdet.engine.optim.config.zero_redundancy import ZeroRedundancyOptimizer
    from visdet.engine.runner import consolidate_sharded_optimizer_state

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        model = nn.Linear(4, 2)
        optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_type="AdamW", lr=1e-2)
        gathers = []
        gather = optimizer.consolidate_state_dict
        optimizer.consolidate_state_dict = lambda to=0: (gathers.append(to), gather(to=to))
        wrapper = OptimWrapper(optimizer)
        saved = []

        def save_checkpoint(out_dir, filename, file_client_args=None, save_optimizer=True, **kwargs):
            if save_optimizer:  # what visdet's Runner.save_checkpoint does on every rank
                consolidate_sharded_optimizer_state(runner.optim_wrapper)
            saved.append(runner.optim_wrapper.state_dict() if save_optimizer else None)

        runner = SimpleNamespace(optim_wrapper=wrapper, save_checkpoint=save_checkpoint)
        hook = ZeroConsolidateHook()
        hook.before_run(runner)
        hook.before_run(runner)  # a second run of the same runner does not wrap twice
        wrapper.update_params(model(torch.ones(3, 4)).sum())
        runner.save_checkpoint("out", "iter_1.pth", save_optimizer=True)
        assert gathers == [0] and len(saved[-1]["state"]) == 2  # the hook's gather, reused by the Runner and save
        runner.save_checkpoint("out", "best.pth", None, False)  # mmengine's best save: no optimizer, no gather
        runner.save_checkpoint("out", "again.pth")  # nothing stepped since: the gather is still fresh
        assert gathers == [0]
        wrapper.update_params(model(torch.ones(3, 4)).sum())
        runner.save_checkpoint("out", "iter_2.pth")
        assert gathers == [0, 0] and float(saved[-1]["state"][0]["step"]) == 2.0
        runner.optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))  # no ZeRO: a no-op
        runner.save_checkpoint("out", "sgd.pth")
        assert gathers == [0, 0]
    finally:
        dist.destroy_process_group()
