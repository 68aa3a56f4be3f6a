"""The command-line flags applied to a config (tools/train.py and tools/test.py share them)."""
from __future__ import annotations

import importlib.util

import pytest
from mmengine.config import Config

from visdet.engine import launch
from visdet.errors import ConfigError


def _cfg(**extra) -> Config:
    return Config(dict(optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)), **extra))


def test_work_dir_precedence():
    cfg = _cfg()
    launch.set_work_dir(cfg, None, "configs/faster_rcnn_adamw.py")
    assert cfg.work_dir == "./work_dirs/faster_rcnn_adamw"
    cfg = _cfg(work_dir="from_config")
    launch.set_work_dir(cfg, None, "configs/x.py")
    assert cfg.work_dir == "from_config"
    launch.set_work_dir(cfg, "from_flag", "configs/x.py")
    assert cfg.work_dir == "from_flag"


def test_amp_switches_the_wrapper_and_refuses_other_wrappers():
    cfg = _cfg()
    launch.enable_amp(cfg)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"
    other = _cfg()
    other.optim_wrapper.type = "DeepSpeedOptimWrapper"
    with pytest.raises(ConfigError, match="optim_wrapper.type"):
        launch.enable_amp(other)


def test_resume_auto_and_explicit(tmp_path):
    cfg = _cfg()
    launch.set_resume(cfg, "auto")
    assert cfg.resume is True and cfg.load_from is None
    checkpoint = tmp_path / "epoch_1.pth"
    checkpoint.write_bytes(b"")
    launch.set_resume(cfg, str(checkpoint))
    assert cfg.load_from == str(checkpoint)
    with pytest.raises(ConfigError, match="--resume"):
        launch.set_resume(cfg, str(tmp_path / "missing.pth"))


def test_launcher_uses_gloo_without_cuda(monkeypatch):
    monkeypatch.setattr(launch.torch.cuda, "is_available", lambda: False)
    cfg = _cfg()
    launch.set_launcher(cfg, "pytorch")
    assert cfg.launcher == "pytorch" and cfg.env_cfg.dist_cfg.backend == "gloo"


@pytest.mark.parametrize("installed", [False, True])
def test_tensorboard_is_added_only_when_installed(monkeypatch, installed):
    real = importlib.util.find_spec
    monkeypatch.setattr(launch.importlib.util, "find_spec",
                        lambda name, *a: (object() if installed else None) if name == "tensorboard" else real(name, *a))
    cfg = _cfg()
    launch.add_vis_backends(cfg)
    types = [b["type"] for b in cfg.visualizer.vis_backends]
    assert types == (["LocalVisBackend", "TensorboardVisBackend"] if installed else ["LocalVisBackend"])


def test_missing_config_file_is_a_config_error():
    with pytest.raises(ConfigError, match="does not exist"):
        launch.load_config("configs/no_such_config.py")


@pytest.mark.parametrize("error, status, prefix", [
    (ConfigError("bad", "model.type"), 2, "visdet: configuration error: model.type: bad"),
    (None, 0, ""),
])
def test_errors_become_one_line_and_an_exit_status(capsys, error, status, prefix):
    def action():
        if error is not None:
            raise error

    assert launch.run_reporting_errors(action) == status
    assert capsys.readouterr().err.strip() == prefix


def test_checkpoint_and_image_errors_exit_1(capsys):
    from visdet.datasets.transforms.loading import ImageLoadError
    from visdet.errors import CheckpointError

    for error, prefix in ((CheckpointError("checkpoint x.pth is truncated"), "visdet: checkpoint error:"),
                          (ImageLoadError("image file a.jpg could not be decoded"), "visdet: data error:")):
        def action(error=error):
            raise error

        assert launch.run_reporting_errors(action) == 1
        assert capsys.readouterr().err.startswith(prefix)


def test_other_exceptions_are_not_swallowed():
    def action():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        launch.run_reporting_errors(action)
