"""Nested optimizer configs (config/nested_optimizer.py): a wrapper's inner optimizer checked like any config."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mmengine.config import Config

from testutils import REPO, data_options
from visdet.engine.optim.config.optimizer_config import parse_optimizer_cfg
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.preflight import check_config

KEY = "optim_wrapper.optimizer"


def test_the_inner_config_is_what_the_constructor_plans_with_the_wrappers_as_shells():
    parsed = parse_optimizer_cfg(dict(type="Lookahead", k=6, optimizer=dict(
        type="SAM", rho=0.1, base_optimizer=dict(type="SGD", lr=0.02, momentum=0.9))), KEY)
    assert parsed.name == "SGD" and parsed.key == f"{KEY}.optimizer.base_optimizer" and parsed.base() == (0.02, None)
    assert [(s.name, s.keyword, s.takes_class, s.kwargs) for s in parsed.shells] == [
        ("SAM", "base_optimizer", True, {"rho": 0.1}), ("Lookahead", "optimizer", False, {"k": 6})]


@pytest.mark.parametrize("cfg, key, text", [
    (dict(type="Lookahead"), f"{KEY}.optimizer", "nest its config as optimizer=dict(type='AdamW'"),
    (dict(type="Lookahead", kk=2, optimizer=dict(type="AdamW")), KEY, "did you mean 'k'?"),
    (dict(type="Lookahead", lr=1e-3, optimizer=dict(type="AdamW")), f"{KEY}.lr",
     "the optimizer it wraps takes it; set it in optim_wrapper.optimizer.optimizer"),
    (dict(type="Lookahead", optimizer=dict(type="AdamWW")), f"{KEY}.optimizer.type", "did you mean 'AdamW'"),
    (dict(type="Lookahead", optimizer=dict(type="AdamW", lrr=1e-3)), f"{KEY}.optimizer", "did you mean 'lr'?"),
    (dict(type="SAM", base_optimizer=dict(type="Lookahead", optimizer=dict(type="SGD", lr=0.1))),
     f"{KEY}.base_optimizer.type", "put the other wrapper outside"),
    (dict(type="AdamW", lr=1e-3, fallback=dict(type="Lookahead", optimizer=dict(type="SGD", lr=0.1))),
     f"{KEY}.fallback.type", "cannot be a fallback"),
    (dict(type="Lookahead", optimizer=dict(type="pytorch_optimizer_Muon", lr=0.02)), f"{KEY}.optimizer.type",
     "its use_muon groups"),
    (dict(type="Lookahead", optimizer=dict(type="LOMO", lr=1e-3)), f"{KEY}.optimizer.type", "over the model"),
])
def test_mistakes_name_the_nested_key(cfg, key, text):
    with pytest.raises(OptimizerConfigError) as raised:
        parse_optimizer_cfg(cfg, KEY)
    assert raised.value.key == key and text in str(raised.value), str(raised.value)


def test_preflight_passes_the_shipped_nested_config():
    check_config(Config.fromfile(str(REPO / "configs" / "faster_rcnn_lookahead_adamw.py")))


def test_train_cli_refuses_a_bad_nested_config_with_exit_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "tools/train.py", "configs/faster_rcnn_lookahead_adamw.py", "--work-dir",
         str(tmp_path / "work"), "--cfg-options", *data_options(str(tmp_path / "data")),
         "optim_wrapper.optimizer.optimizer.betas=[0.9]"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("visdet: configuration error: optim_wrapper.optimizer.optimizer.betas"), \
        result.stderr[-2000:]


@pytest.mark.parametrize("strategy", ["DeepSpeedStrategy", "FSDPStrategy"])
def test_strategies_refuse_a_wrapper_optimizer_at_check_time(strategy):
    from visdet.engine.strategies.checks import check_strategy_config
    from visdet.engine.strategies.names import StrategyConfigError

    cfg = dict(runner_type="FlexibleRunner", strategy=dict(type=strategy),
               optim_wrapper=dict(optimizer=dict(type="Lookahead", optimizer=dict(type="AdamW", lr=1e-3))))
    with pytest.raises(StrategyConfigError, match="Lookahead wraps another optimizer") as raised:
        check_strategy_config(cfg)
    assert raised.value.key == f"{KEY}.type"
