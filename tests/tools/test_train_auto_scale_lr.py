"""tools/train.py --auto-scale-lr (MMDetection's flag): the config's auto_scale_lr turned on, scaled by the Runner."""
from __future__ import annotations

import importlib.util

import pytest

from testutils import REPO, data_options

SMALL = "configs/faster_rcnn_r18_small.py"


def _train_module():
    spec = importlib.util.spec_from_file_location("train_tool_for_scale", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_flag_scales_the_lr_on_the_runner_train_builds(tmp_path, monkeypatch):
    train = _train_module()
    seen: dict[str, list[float]] = {}
    real_build = train.build_runner

    def build_and_stop(cfg, **kwargs):
        runner = real_build(cfg, **kwargs)
        cfg.visualizer.name = "auto_scale_lr_flag"

        def scale_only() -> None:  # what Runner.train does first, without the iterations
            runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
            seen["lrs"] = [g["lr"] for g in runner.optim_wrapper.optimizer.param_groups]

        runner.train = scale_only
        return runner

    monkeypatch.setattr(train, "build_runner", build_and_stop)
    status = train.main([SMALL, "--work-dir", str(tmp_path / "work"), "--auto-scale-lr", "--cfg-options",
                         *data_options(str(tmp_path / "data")), "auto_scale_lr.base_batch_size=4",
                         "train_dataloader.batch_size=2", "experiment_name=auto_scale_lr_flag"])
    assert status == 0
    assert seen["lrs"] and all(lr == pytest.approx(3e-4 * 2 / 4) for lr in seen["lrs"])


def test_the_flag_without_a_base_batch_size_is_one_config_error(tmp_path, capsys):
    # The shipped configs set base_batch_size (configs/_base_/schedules/adamw_cosine.py); a config without it:
    config = tmp_path / "no_base_batch.py"
    config.write_text(f"_base_ = [{str(REPO / SMALL)!r}]\nauto_scale_lr = dict(_delete_=True, enable=False)\n")
    status = _train_module().main([str(config), "--work-dir", str(tmp_path), "--auto-scale-lr"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "auto_scale_lr.base_batch_size: --auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N)" in err
