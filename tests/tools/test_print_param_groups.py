"""tools/print_param_groups.py: the dry run for a config, and config errors reported without a traceback."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

from testutils import REPO

MODEL_MODULE = '''
import torch
from torch import nn
from visdet.registry import MODELS


@MODELS.register_module()
class DryRunNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16, 32)
        self.fc_cls = nn.Linear(32, 3)
        self.bn.weight.requires_grad_(False)
'''


def run_tool(tmp_path: Path, optim_wrapper: str, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "dry_run_net.py").write_text(MODEL_MODULE)
    config = tmp_path / "cfg.py"
    config.write_text(textwrap.dedent(f"""
        custom_imports = dict(imports=['dry_run_net'], allow_failed_imports=False)
        default_scope = 'visdet'
        model = dict(type='DryRunNet')
        optim_wrapper = {optim_wrapper}
    """))
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "print_param_groups.py"), str(config), *extra],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
    )


def test_dry_run_lists_every_parameter_route_and_group(tmp_path):
    result = run_tool(
        tmp_path,
        "dict(optimizer=dict(type='Muon', lr=0.02, weight_decay=0.01, flatten_conv=True, "
        "fallback=dict(type='AdamW', lr=1e-3, weight_decay=0.05)), "
        "paramwise_cfg=dict(bias_decay_mult=0.0, "
        "custom_keys={'fc_cls': dict(lr_mult=0.5), 'nothing': dict(lr_mult=2.0)}))",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "Muon" in lines["conv.weight"] and "flatten_conv=True" in lines["conv.weight"]
    assert "AdamW" in lines["stem.weight"] and "stem" in lines["stem.weight"]
    fc_cls = lines["fc_cls.weight"]
    assert "AdamW" in fc_cls and "0.0005" in fc_cls and "prediction head" in fc_cls
    assert "bias_decay_mult" in lines["conv.bias"]
    assert "Frozen, in the optimizer but unchanged while requires_grad=False: bn.weight" in result.stdout
    assert "AdamW" in lines["bn.weight"]  # routed and planned like the others
    assert "custom_keys['nothing'] is unused: matches no parameter" in result.stdout
    assert "No rule matched" in result.stdout and "Groups:" in result.stdout


def test_cfg_options_and_config_errors(tmp_path):
    result = run_tool(
        tmp_path, "dict(optimizer=dict(type='AdamW', lr=1e-3))",
        "--cfg-options", "optim_wrapper.optimizer.learning_rate=0.1",
    )
    assert result.returncode == 2
    assert "optim_wrapper.optimizer: AdamW got an unknown argument 'learning_rate'; did you mean 'lr'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_refuses_another_constructor_and_shows_absolute_overrides(tmp_path):
    result = run_tool(
        tmp_path, "dict(optimizer=dict(type='AdamW', lr=1e-3), constructor='mmengine.DefaultOptimWrapperConstructor')"
    )
    assert result.returncode == 2 and "optim_wrapper.constructor" in result.stderr
    result = run_tool(
        tmp_path,
        "dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1), "
        "paramwise_cfg=dict(custom_keys={'fc.': dict(weight_decay=0.0, lr_mult=2.0)}))",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("fc.weight"))
    assert row.split()[4:6] == ["0.002", "0"] and "custom_keys['fc.']" in row


def test_layer_decay_scales_and_auto_scaled_lrs_are_shown(capsys):
    spec = importlib.util.spec_from_file_location("print_param_groups_tool", REPO / "tools" / "print_param_groups.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    status = tool.main([str(REPO / "configs/faster_rcnn_r18_small.py"), "--auto-scale-lr", "--world-size", "4",
                        "--cfg-options", "optim_wrapper.paramwise_cfg.layer_decay=0.5",
                        "optim_wrapper.paramwise_cfg.layer_decay_type=stage_wise", "auto_scale_lr.base_batch_size=16"])
    out = capsys.readouterr().out
    assert status == 0
    table = out[out.index("Layer-wise lr decay"):].splitlines()
    assert table[3].split()[:4] == ["0", "0.03125", "3", "backbone.conv1.weight"]
    assert table[8].split()[:2] == ["5", "1"]
    # 4 processes x batch_size 2 over 16: x0.5, applied to the decayed lrs the table above shows
    assert "the lr is multiplied by 0.5" in out
    stem = next(line for line in out.splitlines() if line.startswith("backbone.conv1.weight"))
    assert f"{3e-4 * 0.5 ** 5 * 0.5:.4g}" in stem and "layer_decay[0]" in stem


def test_mmdets_layer_decay_constructor_is_shown_as_it_builds(capsys):
    spec = importlib.util.spec_from_file_location("print_param_groups_mmdet", REPO / "tools" / "print_param_groups.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    status = tool.main([str(REPO / "configs/faster_rcnn_r18_small.py"), "--cfg-options",
                        "optim_wrapper.constructor=LearningRateDecayOptimizerConstructor",
                        "optim_wrapper.paramwise_cfg.decay_rate=0.5", "optim_wrapper.paramwise_cfg.num_layers=8"])
    out = capsys.readouterr().out
    assert status == 0
    stem = next(line for line in out.splitlines() if line.startswith("backbone.conv1.weight"))
    assert f"{3e-4 * 0.5 ** 9:.4g}" in stem
    table = out[out.index("Layer-wise lr decay"):].splitlines()
    assert table[-1].split()[:2] == ["9", "1"]
