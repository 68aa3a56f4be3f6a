"""benchmarks/tune_vs_grid.py: its grid is the space's every configuration, and it runs end to end on a toy budget."""
from __future__ import annotations

import importlib.util
import json

import optuna
import pytest
from mmengine.config import Config

from testutils import REPO, data_options
from visdet.choosing.tuning.storage import open_storage
from visdet.choosing.tuning.study import open_study, optimize


def _benchmark():
    spec = importlib.util.spec_from_file_location("tune_vs_grid", REPO / "benchmarks" / "tune_vs_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(trial, cfg, space, work_dir, iters=None, val_interval=None, metric=None):
    """Only the sample, as run_trial records it: what configuration each grid trial would train."""
    optimizer = space.sample(trial)["optim_wrapper"]["optimizer"]
    trial.set_user_attr("iterations", 0)
    return 0.0 if optimizer is None else float(optimizer["lr"])


@pytest.mark.parametrize("types", [["AdamW", "SGD", "Lion"], ["SGD"]])
def test_the_grid_is_every_configuration_of_the_space_once(tmp_path, types):
    bench = _benchmark()
    space = bench.build_space(types)
    rows = bench.grid_params(types)
    assert len(rows) == 4 * len(types)
    study = open_study(open_storage(None, str(tmp_path)), "grid", pruner="none")
    for params in rows:
        study.enqueue_trial(params)
    optimize(study, Config(), space, str(tmp_path), len(rows), run_trial=_record, gc_after_trial=False)
    assert [t.params for t in study.trials] == rows  # each enqueued configuration ran as given, none sampled
    drawn = {(t.params.get("optimizer", types[0]), t.value) for t in study.trials}
    assert drawn == {(name, lr) for name in types for lr in bench.GRID[name][1]}


@pytest.mark.long
def test_the_benchmark_runs_on_a_toy_budget(tmp_path, capsys):
    data = tmp_path / "data"
    result = _benchmark().main(["--iters", "1", "--val-interval", "1", "--trials", "2", "--types", "SGD",
                                "--work-dir", str(tmp_path / "w"), "--cfg-options", *data_options(str(data))])
    out = capsys.readouterr().out
    assert result["grid"]["trials"] == 4 and result["grid"]["iterations"] == 4
    assert result["pruned"]["trials"] == 2 and 0 <= result["pruned"]["iterations"] <= 2
    assert result["iteration_ratio"] == result["pruned"]["iterations"] / 4
    assert "grid:   best mAP" in out and "pruned: best mAP" in out and "difference (pruned - grid)" in out
    assert json.loads((tmp_path / "w" / "tune_vs_grid.json").read_text())["types"] == ["SGD"]
    assert len(optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'w' / 'study.db'}")) == 2
