"""EMAHook on the small detector with the shipped hooks: validation and checkpoints hold the EMA weights, training
goes on with the raw ones, tools/test.py scores either; its config is checked before training.

Each run keeps every hook of configs/faster_rcnn_r18_small.py (CheckpointHook with save_best, PlainCheckpointHook,
RNGStateHook, ScheduleFreeHook, CurvePlotHook, MemoryLogHook) and adds the EMAHook under test; validation also runs
``PredictionFingerprint`` (ema_fingerprint.py), a sum of the predictions that tells two sets of weights apart where
the bbox mAP of a four-iteration model (0.0) cannot.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from ema_fingerprint import PredictionFingerprint
from testutils import REPO

HERE = Path(__file__).resolve().parent
SMALL = REPO / "configs" / "faster_rcnn_r18_small.py"
EMA_CONFIG = REPO / "configs" / "faster_rcnn_adamw_ema.py"
YOLOX = dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002, update_buffers=True, priority=49)
HOOKS = {"yolox": YOLOX, "mmengine": dict(type="EMAHook")}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
    "PYTHONPATH", "")])}


def write_config(path: Path, data: Path, ema_hook: dict) -> Path:
    """The small config on its data (4 val images), 4 iterations, validation after 2 and 4, shipped hooks + ema_hook."""
    base_hooks = list(Config.fromfile(str(SMALL)).custom_hooks)
    data_root = f"{data}/"
    path.write_text(f"""
_base_ = {str(SMALL)!r}
custom_imports = dict(imports=["ema_fingerprint"], allow_failed_imports=False)
data_root = {data_root!r}
embedded_data = dict(root=data_root, num_val=4)
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_evaluator = [dict(type="CocoMetric", ann_file=data_root + "annotations/instances_val.json", metric="bbox"),
                 dict(type="PredictionFingerprint")]
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=4, val_interval=2)
param_scheduler = []
default_hooks = dict(checkpoint=dict(interval=2, by_epoch=False))
log_processor = dict(by_epoch=False, window_size=1)
custom_hooks = {[*base_hooks, ema_hook]!r}
""")
    return path


class Recorder(Hook):
    """Metrics of each validation, and the weights on both sides of the first one."""

    priority = "LOWEST"  # after EMAHook: its update before, its swap back after validation

    def __init__(self) -> None:
        self.metrics: list[dict] = []
        self.weights_before_val: dict[str, torch.Tensor] = {}
        self.weights_after_val: dict[str, torch.Tensor] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter == 1:  # the second iteration (0-based 1) is done, its validation comes next
            self.weights_before_val = copy.deepcopy(runner.model.state_dict())

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter == 2:  # the first iteration after that validation
            self.weights_after_val = copy.deepcopy(runner.model.state_dict())

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics.append(dict(metrics))


def fingerprint(model: torch.nn.Module, loader) -> dict[str, float]:
    """PredictionFingerprint of ``model`` on ``loader``, computed outside the Runner's loops and hooks."""
    metric = PredictionFingerprint()
    model.eval()
    with torch.no_grad():
        for batch in loader:
            metric.process(batch, [s.to_dict() for s in model.val_step(batch)])
    return {f"fingerprint/{k}": v for k, v in metric.compute_metrics(metric.results).items()}


@pytest.fixture(scope="module", params=["yolox", pytest.param("mmengine", marks=pytest.mark.slow)])
def trained(request, tmp_path_factory):
    from visdet.engine.launch import build_runner, load_config, prepare_embedded_data

    base = tmp_path_factory.mktemp(f"ema_{request.param}")
    config = write_config(base / "config.py", tmp_path_factory.getbasetemp() / "ema_data", HOOKS[request.param])
    cfg = load_config(str(config))
    cfg.work_dir = str(base / "work")
    prepare_embedded_data(cfg)
    runner = build_runner(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    ema = next(h for h in runner._hooks if type(h).__name__ == "EMAHook")
    return dict(runner=runner, ema=ema, recorder=recorder, config=config, name=request.param,
                checkpoint=Path(cfg.work_dir) / "iter_4.pth")


def test_validation_scores_the_ema_weights_and_training_continues_on_the_raw_ones(trained):
    runner, ema, recorder = trained["runner"], trained["ema"], trained["recorder"]
    assert type(ema).__module__ == "visdet.engine.hooks.ema_hook"  # visdet's EMAHook in visdet's scope
    assert len(recorder.metrics) == 2 and "coco/bbox_mAP" in recorder.metrics[-1]
    raw = copy.deepcopy(runner.model.state_dict())
    averaged = ema.ema_model.module.state_dict()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)

    runner.model.load_state_dict(averaged)  # the EMA weights, loaded by hand
    by_hand = fingerprint(runner.model, runner.val_dataloader)
    runner.model.load_state_dict(raw)
    raw_score = fingerprint(runner.model, runner.val_dataloader)
    validated = {k: v for k, v in recorder.metrics[-1].items() if k.startswith("fingerprint/")}
    assert validated == by_hand  # the last validation scored exactly the EMA weights
    assert validated != raw_score  # and not the raw ones

    # After the first validation the model holds the raw weights again, not the average.
    for key, value in recorder.weights_before_val.items():
        assert torch.equal(recorder.weights_after_val[key], value), key


def test_checkpoints_hold_the_ema_weights_and_load_with_weights_only(trained):
    runner, ema = trained["runner"], trained["ema"]
    checkpoint = torch.load(trained["checkpoint"], map_location="cpu", weights_only=True)  # PlainCheckpointHook
    averaged = ema.ema_model.module.state_dict()
    raw = runner.model.state_dict()
    assert int(checkpoint["ema_state_dict"]["steps"]) == 4
    for key, value in checkpoint["state_dict"].items():  # what a deployment loads: the EMA weights
        assert torch.equal(value, averaged[key]), key
        assert torch.equal(checkpoint["ema_state_dict"][f"module.{key}"], raw[key]), key  # the raw ones, to resume
    assert "message_hub" in checkpoint and "meta" in checkpoint


def _test_tool(config: Path, checkpoint: Path, *flags: str) -> tuple[dict[str, float], str]:
    result = subprocess.run([sys.executable, "tools/test.py", str(config), str(checkpoint), "--work-dir",
                             str(checkpoint.parent / "test"), *flags], capture_output=True, text=True, cwd=REPO,
                            env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines() if line.startswith("fingerprint/"))
    return {k: float(v) for k, v in printed.items()}, result.stdout + result.stderr


@pytest.mark.slow  # two runs of tools/test.py
def test_tools_test_scores_the_ema_weights_and_the_raw_ones_on_request(trained):
    if trained["name"] != "yolox":
        pytest.skip("one hook spelling is enough for the tool (the weights it loads do not depend on it)")
    runner, ema = trained["runner"], trained["ema"]
    raw = copy.deepcopy(runner.model.state_dict())
    runner.model.load_state_dict(ema.ema_model.module.state_dict())
    ema_score = fingerprint(runner.model, runner.test_dataloader)
    runner.model.load_state_dict(raw)
    raw_score = fingerprint(runner.model, runner.test_dataloader)

    scores, log = _test_tool(trained["config"], trained["checkpoint"])
    assert _nearer(scores, ema_score, raw_score)
    assert "EMAHook: testing the EMA weights (ExpMomentumEMA" in log

    scores, log = _test_tool(trained["config"], trained["checkpoint"], "--raw-weights")
    assert _nearer(scores, raw_score, ema_score)
    assert "EMAHook: testing the raw training weights" in log


def _nearer(got: dict[str, float], expected: dict[str, float], other: dict[str, float]) -> bool:
    """``got`` is ``expected`` up to summation order (thread count), ten times nearer than ``other``."""
    assert got.keys() == expected.keys()
    return all(abs(got[k] - expected[k]) <= 1e-7 * abs(expected[k]) and
               abs(got[k] - expected[k]) * 10 < abs(other[k] - expected[k]) for k in ("fingerprint/scores",
                                                                                         "fingerprint/boxes"))


def test_the_shipped_config_adds_the_ema_hook_to_the_default_runtime_hooks():
    shipped = Config.fromfile(str(EMA_CONFIG))
    base = Config.fromfile(str(REPO / "configs" / "faster_rcnn_adamw.py"))
    assert shipped.custom_hooks[:-1] == base.custom_hooks
    ema = dict(shipped.custom_hooks[-1])
    assert ema.pop("gamma") == 300 and ema == YOLOX


# Check time: the pre-flight check on the small config with one EMAHook added.
def _checked(ema_hook: dict, records: list, optimizer: str = "adamw") -> list[str]:
    from visdet.engine.preflight import check_config

    cfg = Config.fromfile(str(SMALL))
    cfg.custom_hooks = [*cfg.custom_hooks, ema_hook]
    if optimizer != "adamw":
        cfg.optim_wrapper = Config.fromfile(str(REPO / "configs" / f"faster_rcnn_{optimizer}.py")).optim_wrapper
        cfg.param_scheduler = []
    check_config(cfg)
    return [r.getMessage() for r in records]


@pytest.mark.parametrize("hook", [YOLOX, dict(type="EMAHook"), dict(YOLOX, ema_type="mmdet.ExpMomentumEMA"),
                                  dict(type="EMAHook", ema_type="MomentumAnnealingEMA", gamma=50, begin_iter=2)])
def test_good_ema_configs_pass_the_check_without_warnings(hook, warnings_logged):
    assert not [m for m in _checked(hook, warnings_logged) if "EMAHook" in m or "momentum" in m]


@pytest.mark.parametrize("change, key, says", [
    (dict(ema_type="ExpMomentEMA"), "custom_hooks[6].ema_type", "did you mean 'ExpMomentumEMA'?"),
    (dict(momentum=1.5), "custom_hooks[6].momentum", "must be in (0, 1)"),
    (dict(momentum=0), "custom_hooks[6].momentum", "must be in (0, 1)"),
    (dict(gama=100), "custom_hooks[6].gama", "did you mean 'gamma'?"),
    (dict(begin_iter=2, begin_epoch=1), "custom_hooks[6].begin_epoch", "not both"),
    (dict(test_weights="last"), "custom_hooks[6].test_weights", "'ema', 'raw'"),
])
def test_bad_ema_configs_are_one_config_error_naming_the_key(change, key, says, warnings_logged):
    from visdet.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        _checked(dict(YOLOX, **change), warnings_logged)
    assert error.value.key == key and says in error.value.reason


def test_ema_with_a_schedule_free_optimizer_is_one_warning_naming_both(warnings_logged):
    messages = [m for m in _checked(YOLOX, warnings_logged, optimizer="schedule_free_adamw") if "EMAHook" in m]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith("custom_hooks[6]: EMAHook") and "AdamWScheduleFree (optim_wrapper.optimizer)" in (
        messages[0])


def test_an_optimizer_style_momentum_is_a_warning(warnings_logged):
    messages = _checked(dict(YOLOX, momentum=0.9998), warnings_logged)
    assert any(m.startswith("custom_hooks[6].momentum: is 0.9998") and "momentum=0.0002" in m for m in messages)


@pytest.mark.slow  # a tools/train.py process (its imports)
def test_tools_train_refuses_a_bad_ema_type_before_training(tmp_path):
    config = write_config(tmp_path / "config.py", tmp_path / "data", dict(type="EMAHook", ema_type="EMA"))
    result = subprocess.run([sys.executable, "tools/train.py", str(config), "--work-dir", str(tmp_path / "work")],
                            capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("visdet:")]
    assert len(lines) == 1 and "custom_hooks[6].ema_type: unknown ema_type 'EMA'" in lines[0], result.stderr[-2000:]


def test_the_hook_itself_refuses_what_the_check_refuses():
    from types import SimpleNamespace

    from visdet.engine.hooks.ema_hook import EMAHook
    from visdet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^EMAHook\.ema_type: unknown ema_type 'ExpMomentEMA'; did you mean"):
        EMAHook(ema_type="ExpMomentEMA")
    with pytest.raises(ConfigError, match=r"^EMAHook\.begin_iter: is 10, after the last iteration \(4\)"):
        EMAHook(begin_iter=10).before_train(SimpleNamespace(max_iters=4, max_epochs=1))
    assert EMAHook(ema_type="mmdet.ExpMomentumEMA").ema_cfg["type"] == "ExpMomentumEMA"  # MMDetection's scope prefix


def test_raw_weights_selects_them_on_every_ema_hook_or_adds_one():
    from visdet.engine.hooks.ema_checks import select_test_weights

    cfg = Config.fromfile(str(EMA_CONFIG))
    select_test_weights(cfg, raw=False)
    assert "test_weights" not in cfg.custom_hooks[-1]
    select_test_weights(cfg, raw=True)
    assert cfg.custom_hooks[-1]["test_weights"] == "raw" and len(cfg.custom_hooks) == 7
    plain = Config.fromfile(str(SMALL))  # no EMAHook: its checkpoint's raw weights still need one to be read
    select_test_weights(plain, raw=True)
    assert plain.custom_hooks[-1] == dict(type="EMAHook", test_weights="raw") and len(plain.custom_hooks) == 7
