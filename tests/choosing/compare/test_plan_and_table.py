"""The comparison's plan (every run's config checked first) and its table's figures, without training."""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

from visdet.choosing.compare.hyperparams import Hyperparams, load_hparams_file
from visdet.choosing.compare.plots import write_plots
from visdet.choosing.compare.runs import DIVERGED, FINISHED, NOT_RUN, Run, plan_runs
from visdet.choosing.compare.selection import Choice, parse_optimizers
from visdet.choosing.compare.table import markdown, rows
from visdet.engine.launch import load_config

CONFIG = "configs/faster_rcnn_r18_small.py"


def test_a_run_whose_config_fails_the_checks_is_a_row_saying_why(tmp_path):
    hparams = tmp_path / "hp.py"
    hparams.write_text("hparams = dict(SGD=dict(lr=0.1, momentum=0.9, nesterov_typo=True))\n")
    choices = parse_optimizers("AdamW,SGD,LBFGS")
    runs = plan_runs(load_config(CONFIG), choices, load_hparams_file(str(hparams), choices), tmp_path / "cmp")
    adamw, sgd, lbfgs = runs
    assert sgd.status == NOT_RUN and sgd.hyperparams.source == "--hparams"
    assert "optim_wrapper.optimizer: SGD got an unknown argument 'nesterov_typo'; did you mean 'nesterov'?" \
        in sgd.reason
    assert not sgd.work_dir.exists()  # refused before anything was written for it
    dumped = Config.fromfile(str(adamw.config_path))
    assert dumped.optim_wrapper.optimizer == dict(type="AdamW", lr=3e-4, weight_decay=0.05)  # the config's own
    assert [h["type"] for h in dumped.custom_hooks if h["type"] == "RunRecordHook"] == ["RunRecordHook"]
    assert dumped.work_dir == str(tmp_path / "cmp" / "runs" / "AdamW")
    # LBFGS's family config sets no weight decay and no paramwise_cfg: the run takes both from it (the base
    # config's decay multipliers would fail the checks with nothing to multiply).
    assert lbfgs.hyperparams.source == "configs/faster_rcnn_lbfgs.py"
    wrapper = Config.fromfile(str(lbfgs.config_path)).optim_wrapper
    assert wrapper.optimizer == dict(type="LBFGS", lr=0.5, max_iter=1, history_size=10)
    assert "paramwise_cfg" not in wrapper


def _run(name: str, status: str, train_seconds: float, maps: list[tuple[float, float]], skips: int = 0) -> Run:
    validations = [dict(iter=10 * (i + 1), train_s=t, metrics={"coco/bbox_mAP": m}) for i, (t, m) in enumerate(maps)]
    record = dict(finished=status == FINISHED, train_seconds=train_seconds, validations=validations,
                  iterations=[dict(iter=i, loss=2.0 / i, train_s=0.1 * i) for i in range(1, 21)],
                  seconds_per_iter=0.1, optimizer_state_bytes=3 * 2**20, peak_memory_mib=900.0,
                  nonfinite=dict(skips=skips, consecutive=0))
    return Run(Choice(name, name), Path(name), Hyperparams({"lr": 0.1}, "config"), status=status, record=record)


def test_map_at_equal_time_is_each_runs_last_validation_by_the_fastest_finished_run(tmp_path):
    fast = _run("Fast", FINISHED, 20.0, [(10.0, 0.10), (20.0, 0.20)])
    slow = _run("Slow", FINISHED, 40.0, [(10.5, 0.05), (19.0, 0.15), (30.0, 0.30), (40.0, 0.35)])
    bad = _run("Bad", DIVERGED, 5.0, [(5.0, 0.0)], skips=3)  # not finished: does not set T
    bad.reason, bad.stopped_after = "stopped", 3
    missing = Run(Choice("Gone", "Gone", "needs a CUDA device"), Path("Gone"), status=NOT_RUN,
                  reason="needs a CUDA device")
    table, limit = rows([fast, slow, bad, missing])
    assert limit == 20.0
    by_name = {row["optimizer"]: row for row in table}
    assert by_name["Fast"]["mAP at T"] == 0.20 and by_name["Slow"]["mAP at T"] == 0.15
    assert by_name["Slow"]["best mAP"] == 0.35 and by_name["Slow"]["final mAP"] == 0.35
    assert by_name["Slow"]["state MiB"] == 3.0
    assert by_name["Bad"]["diverged"] == "stopped after 3 skipped steps in a row"
    assert by_name["Bad"]["status"] == "diverged: stopped"
    assert by_name["Gone"]["status"] == "not run: needs a CUDA device" and by_name["Gone"]["best mAP"] is None
    text = markdown(table, limit)
    assert "T (equal wall time) = 20.0 s of training steps" in text and "| Gone |" in text
    drawn = write_plots([fast, slow, bad, missing], tmp_path)
    assert drawn == {name: ["Fast", "Slow", "Bad"] for name in ("loss_vs_iter.png", "map_vs_iter.png",
                                                                 "map_vs_time.png")}
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in drawn)
