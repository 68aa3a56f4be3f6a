"""One trial as a real training run of the small config, in a real Optuna study: complete, pruned, invalid."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import optuna
import pytest
import torch

from testutils import data_options
from visdet.choosing.tuning.space import SearchSpace, loguniform
from visdet.choosing.tuning.trial_run import import_optuna, run_trial
from visdet.engine.launch import load_config
from visdet.errors import ConfigError

SMALL = "configs/faster_rcnn_r18_small.py"
SPACE = SearchSpace(dict(optimizer=dict(type="AdamW", lr=loguniform(1e-4, 1e-3))))

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    return load_config(SMALL, dict(option.split("=", 1) for option in data_options(str(data))))


def _one_trial(cfg, space: SearchSpace, work_dir: Path, pruner=None) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: run_trial(trial, cfg, space, str(work_dir), iters=4, val_interval=2),
                   n_trials=1, catch=())
    return study.trials[0]


def _logged_map(work_dir: Path) -> list[float]:
    """The mAP of each validation as the run's LocalVisBackend recorded it (scalars.json)."""
    (scalars,) = work_dir.glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [row["coco/bbox_mAP"] for row in rows if "coco/bbox_mAP" in row]


def test_complete_trial_returns_its_best_validation(cfg, tmp_path):
    trial = _one_trial(cfg, SPACE, tmp_path)
    assert trial.state == optuna.trial.TrialState.COMPLETE
    logged = _logged_map(tmp_path)
    assert len(logged) == 2  # validations at iterations 2 and 4
    assert math.isfinite(trial.value) and trial.value == max(logged)
    attrs = trial.user_attrs
    assert attrs["iterations"] == 4 and attrs["final_value"] == logged[-1] and attrs["seconds"] > 0
    assert attrs["work_dir"] == str(tmp_path) and "pruned_reason" not in attrs
    optimizer = attrs["overrides"]["optim_wrapper"]["optimizer"]
    assert optimizer["lr"] == trial.params["optimizer.lr"] and 1e-4 <= optimizer["lr"] <= 1e-3
    assert sorted(trial.intermediate_values) == [2, 4]  # the hook reported each validation at its iteration


def test_pruner_stops_the_trial_after_its_first_validation(cfg, tmp_path):
    trial = _one_trial(cfg, SPACE, tmp_path, pruner=optuna.pruners.ThresholdPruner(lower=1.0))
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["iterations"] == 2 and list(trial.intermediate_values) == [2]
    assert "pruned at iteration 2" in trial.user_attrs["pruned_reason"]
    assert trial.user_attrs["final_value"] == _logged_map(tmp_path)[-1]
    # The run stopped after the checkpoint hook: what it saved is whole, and nothing after iteration 2 exists.
    assert not (tmp_path / "iter_4.pth").exists()
    last = Path((tmp_path / "last_checkpoint").read_text().strip())
    assert last.name == "iter_2.pth"
    assert torch.load(last, map_location="cpu", weights_only=True)["meta"]["iter"] == 2


def test_invalid_sampled_config_is_pruned_with_its_reason_and_trains_nothing(cfg, tmp_path):
    space = SearchSpace(dict(optimizer=dict(type="SGD", lr=loguniform(1e-3, 1e-1), betas=(0.9, 0.99))))
    trial = _one_trial(cfg, space, tmp_path / "trial")
    assert trial.state == optuna.trial.TrialState.PRUNED
    reason = trial.user_attrs["pruned_reason"]
    assert reason.startswith("invalid config:") and "betas" in reason and "SGD" in reason
    assert trial.user_attrs["iterations"] == 0 and trial.user_attrs["final_value"] is None
    assert not list(tmp_path.rglob("*.pth"))


def test_diverging_trial_is_pruned_by_the_guard(cfg, tmp_path):
    # lr 1e30 overflows the weights at the first step; the guard stops at the first non-finite loss.
    space = SearchSpace(dict(optimizer=dict(type="SGD", lr=1e30, weight_decay=0.0),
                             optim_wrapper=dict(max_nonfinite_steps=1)))
    trial = _one_trial(cfg, space, tmp_path)
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_reason"].startswith("diverged: ")
    assert "max_nonfinite_steps=1" in trial.user_attrs["pruned_reason"]
    assert trial.user_attrs["iterations"] == 1 and trial.user_attrs["final_value"] is None


def test_missing_optuna_is_a_config_error_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` sees when it is not installed
    with pytest.raises(ConfigError) as caught:
        import_optuna()
    assert 'pip install -e ".[tune]"' in caught.value.reason
