"""Every optimizer-family config trains the small detector: finite losses that go down.

Each config's ``optim_wrapper`` is put on the small config (ResNet-18, 128 px) and
trained for a few iterations on one fixed batch, so a falling loss is the
optimizer's doing, not a lucky batch order. The small config's linear warmup runs
too, as in training (D-Adaptation's step-size estimate overshoots without one).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR
from mmengine.registry import init_default_scope

from visdet.datasets.embedded import EmbeddedDataSpec, ensure
from visdet.engine.hooks.schedule_free import is_schedule_free
from visdet.engine.optim.wrappers.train_step import train_step

REPO = Path(__file__).resolve().parents[2]
# The small config, its strategy variants (DeepSpeed/FSDP engines, tested in tests/engine) and the comparison
# config (the small model on the main data, AdamW: the choosing tools' tests cover it) are not families.
FAMILIES = sorted(p.name for p in (REPO / "configs").glob("faster_rcnn_*.py")
                  if not p.name.startswith(("faster_rcnn_r18_small", "faster_rcnn_r18_compare")))
ITERATIONS = 10
#: Trained by other tests of the default run too (DeepSpeedCPUAdam under ZeRO-2 offload, the Muon hybrid
#: under the Runner); their family runs are long (`pytest -m long`). NorMuon's Newton-Schulz steps make its
#: run ~3x an AdamW one on CPU; tests/engine/optim/build/test_muon_layout.py steps its config on the detector.
LONG_FAMILIES = ("faster_rcnn_deepspeed_cpu_adam.py", "faster_rcnn_muon.py", "faster_rcnn_normuon.py")
#: Compile-first (torchao, heavyball: torch.compile per parameter shape): over 15 minutes for the detector on
#: 2 shared cores, and eagerly torchao's quantised state is slower still; test_contract.py and
#: test_source_{torchao,heavyball}.py hold their steps to the contract on small problems in the default run.
LONG_FAMILIES += ("faster_rcnn_heavyball_soap.py", "faster_rcnn_torchao_adamw8bit.py")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    init_default_scope("visdet")
    cfg = Config.fromfile(str(REPO / "configs" / "faster_rcnn_r18_small.py"))
    root = str(tmp_path_factory.mktemp("shapes") / "small")
    ensure(root, EmbeddedDataSpec.from_cfg({**cfg.embedded_data, "num_train": 4, "num_val": 1}))
    cfg.train_dataloader.dataset.data_root = root
    from visdet.registry import DATASETS

    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    return cfg, batch


def test_every_family_is_covered():
    assert {"faster_rcnn_adamw.py", "faster_rcnn_sgd.py", "faster_rcnn_adamw8bit.py", "faster_rcnn_lion.py",
            "faster_rcnn_dadapt_adam.py", "faster_rcnn_muon.py", "faster_rcnn_deepspeed_cpu_adam.py",
            "faster_rcnn_adafactor.py", "faster_rcnn_schedule_free_adamw.py"} <= set(FAMILIES)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.long) if n in LONG_FAMILIES else n
                                  for n in FAMILIES])
def test_family_config_trains_the_small_detector(name, small):
    cfg, batch = small
    from visdet.registry import MODELS

    optim_cfg = Config.fromfile(str(REPO / "configs" / name)).optim_wrapper
    warmup = next(s for s in cfg.param_scheduler if s["type"] == "LinearLR")
    if "warmup_steps" in optim_cfg.optimizer:  # schedule-free: its own warmup, as short as the small config's
        optim_cfg.optimizer.warmup_steps = warmup["end"]
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    wrapper = build_optim_wrapper(model, optim_cfg)
    if is_schedule_free(wrapper.optimizer):
        wrapper.optimizer.train()  # what ScheduleFreeHook does in the Runner
    scheduler = LinearLR(wrapper, start_factor=warmup["start_factor"], by_epoch=False, begin=0, end=warmup["end"])
    losses = []
    for _ in range(ITERATIONS):
        log_vars = train_step(model, batch, wrapper)
        scheduler.step()
        losses.append(float(log_vars["loss"]))
    assert all(math.isfinite(v) for v in losses), losses
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.9 * first, f"{name}: loss did not fall: {losses}"
