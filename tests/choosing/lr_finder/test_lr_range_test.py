"""The range test end to end on the small config's real Runner: the sweep, the restore, the outputs.

One sweep (module fixture) with a paramwise ``lr_mult`` so the groups' lrs differ; a hook of the test's own,
registered on the Runner next to the config's default hooks, watches the real optimizer: the weights and
optimizer state at ``before_train`` (after weight initialisation and the other hooks: what training starts
from, with one weight shifted so that it differs from the model as built), each
group's lr as the step sees it, and the state after the last step.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import torch
from mmengine.hooks import Hook
from PIL import Image

from testutils import data_options
from visdet.choosing.lr_finder.range_test import RangeTestSettings, build_range_test_runner, finish
from visdet.engine.launch import load_config

SMALL = "configs/faster_rcnn_r18_small.py"
# From 1e-5 to 10: AdamW's loss falls, then diverges well before the last iteration.
SETTINGS = RangeTestSettings(start=1e-5, end=10.0, iters=10)


class Watch(Hook):
    """What the test compares the finder's record and restore with."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.before: dict[str, Any] = {}
        self.built_lrs: list[float] = []
        self.last: dict[str, Any] = {}
        self.step_lrs: list[list[float]] = []
        self.steps = 0

    @staticmethod
    def _state(runner) -> dict[str, Any]:
        return {"model": {k: v.detach().clone() for k, v in runner.model.state_dict().items()},
                "optim": copy.deepcopy(runner.optim_wrapper.state_dict())}

    def before_train(self, runner) -> None:
        # Training starts from whatever the state is once every before_train hook has run (EMA copies, a
        # loaded checkpoint...): shift one weight here, so a snapshot taken any earlier (at build time) shows.
        with torch.no_grad():
            next(runner.model.parameters()).add_(1e-3)
        self.before = self._state(runner)
        self.built_lrs = [group["lr"] for group in runner.optim_wrapper.param_groups]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.step_lrs.append([group["lr"] for group in runner.optim_wrapper.param_groups])

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.steps += 1
        self.last = self._state(runner)


def _equal(a: Any, b: Any) -> bool:
    """Bit-identical nested state (tensors by torch.equal, dtype included)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lr_range")
    options = dict(item.split("=", 1) for item in data_options(str(tmp / "data")))
    cfg = load_config(SMALL, options)
    cfg.merge_from_dict({"optim_wrapper.paramwise_cfg.custom_keys": {"backbone": dict(lr_mult=0.1)}})
    runner, target = build_range_test_runner(cfg, SETTINGS, str(tmp / "work"))
    watch = Watch()
    runner.register_hook(watch)
    built = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}  # before init_weights
    runner.train()
    result = finish(runner, target, SETTINGS)
    final = Watch._state(runner)
    return dict(runner=runner, built=built, record=runner.train_loop.record, watch=watch, result=result, final=final,
                build_ratios=[lr / target.value for lr in watch.built_lrs])


def test_weights_and_optimizer_state_are_restored_bit_identically(sweep):
    watch, final = sweep["watch"], sweep["final"]
    assert watch.steps >= 2
    # The sweep changed the weights and filled AdamW's state, so the restore has something to undo.
    assert not _equal(watch.last["model"], watch.before["model"])
    assert not _equal(watch.last["optim"], watch.before["optim"])
    assert _equal(final["model"], watch.before["model"])
    # ... and what it restores is the state training started from (after every before_train hook), not the
    # model as the Runner built it.
    assert not _equal(sweep["built"], watch.before["model"])
    assert _equal(final["optim"], watch.before["optim"])


def test_lr_rises_exponentially_and_every_group_keeps_its_ratio(sweep):
    record, watch = sweep["record"], sweep["watch"]
    factor = (SETTINGS.end / SETTINGS.start) ** (1 / (SETTINGS.iters - 1))
    assert record.lrs[0] == pytest.approx(SETTINGS.start)
    for before, after in zip(record.lrs, record.lrs[1:]):
        assert after / before == pytest.approx(factor)
    ratios = sweep["build_ratios"]
    assert min(ratios) == pytest.approx(0.1) and max(ratios) == pytest.approx(1.0)  # backbone lr_mult=0.1 kept
    assert watch.step_lrs == record.group_lrs  # what the optimizer stepped with
    for lr, groups in zip(record.lrs, watch.step_lrs):
        assert [g / lr for g in groups] == pytest.approx(ratios)


def test_stops_at_divergence_within_the_iterations_asked_for(sweep):
    record, watch = sweep["record"], sweep["watch"]
    assert watch.steps == len(record.lrs) == len(record.losses) <= SETTINGS.iters
    # lr 10 with AdamW blows the loss up: the sweep ends early on the smoothed loss's rise (or a NaN).
    assert record.stop_reason in ("diverged", "non-finite loss") and watch.steps < SETTINGS.iters
    assert sweep["runner"].iter == watch.steps


def test_outputs_png_and_json(sweep):
    result = sweep["result"]
    with Image.open(result.png_path) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
        image.verify()
    payload = json.loads(result.json_path.read_text())
    assert payload["iterations"] == len(payload["points"]) == sweep["watch"].steps
    suggestions = payload["suggestions"]
    for value in suggestions.values():
        assert value is not None and math.isfinite(value) and SETTINGS.start <= value <= SETTINGS.end
    assert payload["cfg_options"] == f"--cfg-options optim_wrapper.optimizer.lr={suggestions['steepest_descent']:.3g}"
    assert payload["lr_key"] == "optim_wrapper.optimizer.lr" and payload["config_lr"] == pytest.approx(3e-4)


@pytest.mark.long
@pytest.mark.parametrize("optimizer, key", [
    # A closure optimizer (SAM re-runs forward and backward inside step) and a wrapper (Lookahead keeps slow
    # weights in its own state): the sweep runs their own iteration and the restore covers their state.
    (dict(type="SAM", rho=0.05, base_optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)),
     "optim_wrapper.optimizer.base_optimizer.lr"),
    (dict(type="Lookahead", k=2, alpha=0.5, optimizer=dict(type="AdamW", lr=3e-4, weight_decay=0.05)),
     "optim_wrapper.optimizer.optimizer.lr"),
])
def test_wrapped_and_closure_optimizers_are_swept_and_restored(tmp_path, optimizer, key):
    options = dict(item.split("=", 1) for item in data_options(str(tmp_path / "data")))
    cfg = load_config(SMALL, options)
    cfg.merge_from_dict({"optim_wrapper.optimizer": dict(_delete_=True, **optimizer)})
    settings = RangeTestSettings(start=1e-4, end=1e-2, iters=4)
    runner, target = build_range_test_runner(cfg, settings, str(tmp_path / "work"))
    watch = Watch()
    runner.register_hook(watch)
    runner.train()
    result = finish(runner, target, settings)
    assert result.lr_key == key and watch.steps == 4
    assert [lrs[0] for lrs in watch.step_lrs] == pytest.approx([1e-4 * 100 ** (i / 3) for i in range(4)])
    assert not _equal(watch.last["optim"], watch.before["optim"])
    final = Watch._state(runner)
    assert _equal(final["model"], watch.before["model"]) and _equal(final["optim"], watch.before["optim"])
