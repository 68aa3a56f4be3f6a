"""The search space: its file format and mistakes, sampling with a real Optuna study, apply's rule, the probes."""
from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from visdet.choosing.prepare import check_run_config
from visdet.choosing.tuning.space import (SearchSpace, check_space, choice, intuniform, load_space, loguniform,
                                          uniform)
from visdet.engine.launch import load_config
from visdet.errors import ConfigError

SMALL = "configs/faster_rcnn_r18_small.py"
ISSUE_EXAMPLE = ("space = dict(optimizer=dict(type=choice('AdamW', 'Lion', 'SGD'), lr=loguniform(1e-5, 1e-2), "
                 "weight_decay=loguniform(1e-4, 1e-1)))\n")
CONDITIONAL = """\
space = dict(
    optimizer=choice(
        dict(type='SGD', lr=loguniform(1e-3, 1e-1), momentum=uniform(0.8, 0.99), weight_decay=1e-4),
        dict(type='AdamW', lr=loguniform(1e-5, 1e-2), weight_decay=0.05),
    ),
    optim_wrapper=dict(clip_grad=dict(max_norm=intuniform(2, 20, step=2))),
)
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def cfg():
    return load_config(SMALL)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.py"
    path.write_text(textwrap.dedent(text))
    return str(path)


def _samples(space: SearchSpace, n: int) -> list[tuple[dict, dict]]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((space.sample(trial), trial.params))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("text, key, words", [
    ("space = dict(optimizer=dict(lr=loguniform(1e-5, 1e-2))\n", "--space", ["line 1", "invalid Python"]),
    ("x = 1\n", "--space", ["no top-level `space`"]),
    ("space = [1, 2]\n", "--space", ["must be a dict", "list"]),
    ("space = dict()\n", "--space", ["empty"]),
    ("a = 1\nspace = dict(optimizer=dict(lr=normal(0, 1)))\n", "--space", ["line 2", "NameError", "normal"]),
    ("space = dict(optimizer=dict(lr=loguniform(1e-2, 1e-5)))\n", "space.optimizer.lr", ["low < high"]),
    ("space = dict(optimizer=dict(lr=uniform(0.1, 0.1)))\n", "space.optimizer.lr", ["low < high"]),
    ("space = dict(optimizer=dict(lr=loguniform(0, 1e-2)))\n", "space.optimizer.lr", ["low > 0"]),
    ("space = dict(optimizer=dict(type=choice()))\n", "space.optimizer.type", ["at least one option"]),
    ("space = dict(optimizer=dict(lr=uniform('a', 1)))\n", "space.optimizer.lr", ["two finite numbers", "'a'"]),
    ("space = dict(model=dict(backbone=dict(depth=intuniform(18, 50.5))))\n", "space.model.backbone.depth",
     ["integers"]),
    ("space = dict(optimizer=choice(dict(type='SGD', lr=loguniform(-1, 1)), dict(type='AdamW')))\n",
     "space.optimizer.lr[SGD]", ["low > 0"]),
])
def test_malformed_space_names_its_key(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as caught:
        load_space(_write(tmp_path, text))
    assert caught.value.key == key
    for word in words:
        assert word in caught.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_space(str(tmp_path / "nope.py"))
    assert caught.value.key == "--space" and "does not exist" in caught.value.reason


def test_key_the_config_lacks_is_refused_with_close_names(cfg, tmp_path):
    space = load_space(_write(tmp_path, "space = dict(model=dict(backbone=dict(dpeth=choice(18, 34))))\n"))
    with pytest.raises(ConfigError) as caught:
        check_space(cfg, space)
    assert caught.value.key == "space.model.backbone.dpeth"
    assert "did you mean 'depth'" in caught.value.reason
    # The optimizer's own keys are free: another type takes other arguments.
    SearchSpace(dict(optimizer=dict(type="SGD", momentum=uniform(0.8, 0.9)))).check_keys(cfg)


def test_issue_example_samples_in_range_with_stable_names(cfg, tmp_path):
    space = load_space(_write(tmp_path, ISSUE_EXAMPLE))
    types = set()
    for overrides, params in _samples(space, 12):
        assert set(params) == {"optimizer.type", "optimizer.lr", "optimizer.weight_decay"}
        optimizer = overrides["optim_wrapper"]["optimizer"]
        assert set(overrides) == {"optim_wrapper"} and set(optimizer) == {"type", "lr", "weight_decay"}
        assert 1e-5 <= optimizer["lr"] <= 1e-2 and 1e-4 <= optimizer["weight_decay"] <= 1e-1
        types.add(optimizer["type"])
    assert types == {"AdamW", "Lion", "SGD"}
    assert "optimizer.lr: loguniform(1e-05, 0.01)" in space.describe()
    assert check_space(cfg, space) == []  # every type passes the checks at every corner


def test_conditional_keys_only_in_their_branch(tmp_path):
    space = load_space(_write(tmp_path, CONDITIONAL))
    seen = set()
    for overrides, params in _samples(space, 16):
        optimizer = overrides["optim_wrapper"]["optimizer"]
        max_norm = overrides["optim_wrapper"]["clip_grad"]["max_norm"]
        assert isinstance(max_norm, int) and 2 <= max_norm <= 20 and max_norm % 2 == 0
        seen.add(optimizer["type"])
        if optimizer["type"] == "SGD":
            assert set(params) == {"optimizer", "optimizer.lr[SGD]", "optimizer.momentum[SGD]",
                                   "optim_wrapper.clip_grad.max_norm"}
            assert 1e-3 <= optimizer["lr"] <= 1e-1 and 0.8 <= optimizer["momentum"] <= 0.99
            assert optimizer["weight_decay"] == 1e-4
        else:
            assert set(params) == {"optimizer", "optimizer.lr[AdamW]", "optim_wrapper.clip_grad.max_norm"}
            assert "momentum" not in optimizer and 1e-5 <= optimizer["lr"] <= 1e-2
    assert seen == {"SGD", "AdamW"}
    assert set(space.parameters()) == {"optimizer", "optimizer.lr[SGD]", "optimizer.momentum[SGD]",
                                       "optimizer.lr[AdamW]", "optim_wrapper.clip_grad.max_norm"}
    # Written in full, the optimizer's parameters keep the shorthand's names (a resumed study finds them).
    full = SearchSpace(dict(optim_wrapper=dict(optimizer=space.tree["optimizer"],
                                               clip_grad=space.tree["optim_wrapper"]["clip_grad"])))
    assert set(full.parameters()) == set(space.parameters())


def test_apply_replaces_an_optimizer_of_another_type_and_merges_the_rest(cfg):
    space = SearchSpace(dict(optimizer=dict(type=choice("AdamW", "SGD"), lr=loguniform(1e-4, 1e-2))))
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05  # the config's AdamW
    sgd = space.apply(cfg, {"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}},
                            "train_cfg": {"max_epochs": 5}})
    assert dict(sgd.optim_wrapper.optimizer) == {"type": "SGD", "lr": 0.01, "momentum": 0.9}
    assert sgd.optim_wrapper.clip_grad.max_norm == 10.0 and sgd.train_cfg.max_epochs == 5
    assert sgd.train_cfg.val_interval == cfg.train_cfg.val_interval
    same = space.apply(cfg, {"optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 0.001}}})
    assert dict(same.optim_wrapper.optimizer) == {"type": "AdamW", "lr": 0.001, "weight_decay": 0.05}
    assert cfg.optim_wrapper.optimizer.lr == 3e-4 and cfg.train_cfg.max_epochs == 2  # cfg unchanged
    check_run_config(same)


def test_check_space_refuses_a_space_whose_every_config_is_invalid(cfg):
    # Neither AdamW nor Lion takes 'momentum', whatever the values.
    space = SearchSpace(dict(optimizer=dict(type=choice("AdamW", "Lion"), lr=loguniform(1e-5, 1e-2),
                                            weight_decay=0.01, momentum=uniform(0.8, 0.9))))
    with pytest.raises(ConfigError) as caught:
        check_space(cfg, space)
    assert caught.value.key == "--space" and "every config is invalid" in caught.value.reason
    assert "optimizer.type=AdamW" in caught.value.reason and "optimizer.type=Lion" in caught.value.reason
    assert "momentum" in caught.value.reason


def test_check_space_warns_of_a_branch_that_never_passes(cfg):
    space = SearchSpace(dict(optimizer=choice(
        dict(type="SGD", lr=loguniform(1e-3, 1e-1), momentum=uniform(0.8, 0.99), weight_decay=1e-4),
        dict(type="AdamW", lr=loguniform(1e-5, 1e-2), weight_decay=0.05, momentum=0.9))))
    warnings = check_space(cfg, space)
    assert len(warnings) == 1
    assert warnings[0].startswith("space.optimizer: the branch 'AdamW'") and "momentum" in warnings[0]


def test_distributions_importable_and_checked_in_python():
    with pytest.raises(ConfigError) as caught:
        SearchSpace(dict(optimizer=dict(betas=(uniform(0.9, 0.8), 0.999))))
    assert caught.value.key == "space.optimizer.betas.0"
    with pytest.raises(ConfigError) as caught:
        SearchSpace(dict(model=dict(backbone=dict(depth=intuniform(18, 51, step=2)))))
    assert caught.value.key == "space.model.backbone.depth" and "multiple of step=2" in caught.value.reason
    assert choice(dict(type="SGD", nesterov=True), dict(type="SGD"), dict(type="Lion")).labels() == [
        "SGD#0", "SGD#1", "Lion"]
    space = SearchSpace(dict(optimizer=dict(betas=choice((0.9, 0.999), (0.95, 0.98)))))
    values = {tuple(o["optim_wrapper"]["optimizer"]["betas"]) for o, _ in _samples(space, 8)}
    assert values == {(0.9, 0.999), (0.95, 0.98)}
