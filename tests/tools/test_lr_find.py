"""tools/lr_find.py as a user runs it (in-process ``main(argv)``): bad input is one message and exit 2 before
anything is built; a short sweep prints the suggestion and the ``--cfg-options`` line to train with it."""
from __future__ import annotations

import json
import sys

import pytest
from mmengine.config import Config

from testutils import REPO, data_options
from visdet.choosing.lr_finder.applicability import lr_target
from visdet.engine.launch import load_config
from visdet.errors import ConfigError

sys.path.insert(0, str(REPO / "tools"))
import lr_find  # noqa: E402

SMALL = "configs/faster_rcnn_r18_small.py"


def _refused(capsys, argv: list[str], key: str, *words: str) -> str:
    assert lr_find.main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("visdet:")]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert f"configuration error: {key}:" in lines[0]
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("flags, key, words", [
    (["--start", "1e-2", "--end", "1e-3"], "--end", ("above --start",)),
    (["--start", "1e-2", "--end", "1e-2"], "--end", ("above --start",)),
    (["--start", "0"], "--start", ("> 0",)),
    (["--iters", "1"], "--iters", ("at least 2",)),
    (["--smooth", "1"], "--smooth", ("[0, 1)",)),
    (["--diverge", "1"], "--diverge", ("> 1",)),
])
def test_bad_flags_are_refused_before_the_config_is_read(capsys, tmp_path, flags, key, words):
    _refused(capsys, [SMALL, "--work-dir", str(tmp_path / "w"), *flags], key, *words)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("optimizer, why", [
    ("DAdaptAdam", "learning-rate-free"),  # lr multiplies the step size it estimates
    ("SAMWrapper", "takes no lr"),  # heavyball's ASAM: its wrapped optimizer has its own default lr
])
def test_optimizers_without_an_lr_to_find_are_not_applicable(capsys, tmp_path, optimizer, why):
    line = _refused(capsys, [SMALL, "--work-dir", str(tmp_path / "w"), "--cfg-options",
                             f"optim_wrapper.optimizer.type={optimizer}"],
                    "optim_wrapper.optimizer.type", "not applicable", optimizer, why)
    assert "weight_decay" not in line  # refused as lr-less, before the keyword checks
    assert not (tmp_path / "w").exists()  # nothing built, no work dir


@pytest.mark.parametrize("config, key, value", [
    ("configs/faster_rcnn_lookahead_adamw.py", "optim_wrapper.optimizer.optimizer.lr", 3e-4),
    ("configs/faster_rcnn_sam_sgd.py", "optim_wrapper.optimizer.base_optimizer.lr", None),
    (SMALL, "optim_wrapper.optimizer.lr", 3e-4),
])
def test_the_lr_key_follows_a_wrapper_to_the_optimizer_it_wraps(config, key, value):
    cfg = load_config(config)
    target = lr_target(cfg)
    assert target.key == key
    expected = cfg.optim_wrapper.optimizer
    for part in key.split(".")[2:-1]:
        expected = expected[part]
    assert target.value == pytest.approx(expected["lr"] if value is None else value)


def test_a_wrapper_around_a_learning_rate_free_optimizer_is_not_applicable_either():
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type="Lookahead", k=6, optimizer=dict(type="Prodigy")))))
    with pytest.raises(ConfigError, match="learning-rate-free") as caught:
        lr_target(cfg)
    assert caught.value.key == "optim_wrapper.optimizer.optimizer.type"


def test_timms_composed_name_takes_the_lr_at_the_top():
    # type='lookahead_adamw': every keyword goes to the inner AdamW, so the lr stays where it is written.
    cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type="lookahead_adamw", lr=2e-3))))
    target = lr_target(cfg)
    assert (target.key, target.value) == ("optim_wrapper.optimizer.lr", 2e-3)


def test_a_short_sweep_prints_the_lr_and_the_cfg_options_to_use(capsys, tmp_path):
    work = tmp_path / "work"
    assert lr_find.main([SMALL, "--iters", "4", "--start", "1e-4", "--end", "1e-2", "--work-dir", str(work),
                         "--cfg-options", *data_options(str(tmp_path / "data"))]) == 0
    out = capsys.readouterr().out
    payload = json.loads((work / "lr_find.json").read_text())
    assert payload["iterations"] <= 4 and (work / "lr_find.png").stat().st_size > 0
    line = next(line for line in out.splitlines() if line.startswith("train with: "))
    assert line == f"train with: {payload['cfg_options']}"
    assert payload["cfg_options"].startswith("--cfg-options optim_wrapper.optimizer.lr=")
    value = float(payload["cfg_options"].rsplit("=", 1)[1])
    assert 1e-4 <= value <= 1e-2
