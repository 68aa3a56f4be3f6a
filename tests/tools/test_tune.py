"""tools/tune.py end to end on the small config: real training, real Optuna, SQLite and a real PostgreSQL server.

Trials train 1 iteration and validate once (the 8 val images): what is checked is the study, not the mAP.
The PostgreSQL test needs $VISDET_TEST_POSTGRES_URL (``bash tools/dev/start_postgres.sh`` prints one; .ci/run
exports it); it is skipped without it except in CI, where it must run.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import matplotlib.image
import optuna
import pytest
from optuna.trial import TrialState

from testutils import REPO, data_options

SMALL = "configs/faster_rcnn_r18_small.py"
BUDGET = ("--iters", "1", "--val-interval", "1")
# Seed 1 draws NoSuchOptimizer for trials 0 and 2 (pruned: invalid config) and SGD for trial 1: one trial trains.
# (The importances plot, which needs 2 complete trials, is drawn in tests/choosing/tuning/test_study.py.)
BAD_BRANCH = "space = dict(optimizer=dict(type=choice('SGD', 'NoSuchOptimizer'), lr=loguniform(1e-3, 1e-2), " \
             "weight_decay=1e-4))\n"
SGD_LR = "space = dict(optimizer=dict(type='SGD', lr=loguniform(1e-3, 1e-2), weight_decay=1e-4))\n"
PNG = b"\x89PNG\r\n\x1a\n"


def _tool():
    spec = importlib.util.spec_from_file_location("tune_tool", REPO / "tools" / "tune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The embedded data set, generated once here: two workers starting together would both generate it."""
    from visdet.engine.launch import load_config, prepare_embedded_data

    root = tmp_path_factory.mktemp("data")
    prepare_embedded_data(load_config(str(REPO / SMALL), dict(o.split("=", 1) for o in data_options(str(root)))))
    return root


def _space(tmp_path: Path, text: str, name: str = "space.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _study(work: Path, name: str = "faster_rcnn_r18_small") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'study.db'}")


def test_a_study_resumes_with_its_trials_prunes_an_invalid_one_and_writes_its_outputs(tmp_path, data, capsys):
    from visdet.choosing.prepare import check_run_config
    from visdet.engine.launch import load_config

    tune, work = _tool(), tmp_path / "study"
    args = [str(REPO / SMALL), "--space", _space(tmp_path, BAD_BRANCH), *BUDGET, "--seed", "1", "--work-dir",
            str(work)]
    assert tune.main([*args, "--trials", "2", "--cfg-options", *data_options(str(data))]) == 0
    out = capsys.readouterr().out
    first = _study(work).trials
    assert [t.state for t in first] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert "unknown optimizer type 'NoSuchOptimizer'" in first[0].user_attrs["pruned_reason"]
    assert first[0].user_attrs["iterations"] == 0 and first[1].user_attrs["iterations"] == 1
    assert "[1/2] trial 0 (optimizer.type=NoSuchOptimizer, optimizer.lr=" in out
    assert "pruned after 0 iterations: invalid config: optim_wrapper.optimizer.type: unknown" in out
    assert "[2/2] trial 1 (optimizer.type=SGD" in out and "2 finished trials (1 complete, 1 pruned)" in out
    assert "param_importances.png: not drawn: needs 2 complete trials, the study has 1" in out

    assert tune.main([*args, "--trials", "3", "--cfg-options", *data_options(str(data))]) == 0  # resumed
    out = capsys.readouterr().out
    study = _study(work)
    assert len(study.trials) == 3 and study.trials[2].state == TrialState.PRUNED
    for before, after in zip(first, study.trials[:2]):  # the earlier trials, untouched
        assert (after.number, after.state, after.params, after.value) == (before.number, before.state,
                                                                         before.params, before.value)
    assert "[3/3] trial 2 (optimizer.type=NoSuchOptimizer" in out and "best mAP" in out
    assert {t.user_attrs["worker"] for t in study.trials} == {f"{os.uname().nodename}:{os.getpid()}"}
    assert (work / "trials" / "trial_1" / "iter_1.pth").is_file()

    best = load_config(str(work / "best_config.py"))
    check_run_config(best)  # runnable as tools/train.py would run it
    assert best.optim_wrapper.optimizer.lr == study.best_trial.params["optimizer.lr"]
    assert best.optim_wrapper.optimizer.type == "SGD" and "work_dir" not in best
    assert best.randomness == load_config(str(REPO / SMALL)).randomness  # the config's own seed, kept
    assert best.train_cfg == load_config(str(REPO / SMALL)).train_cfg  # the config's schedule, not the trial's
    assert "param_importances.png: not drawn: needs 2 complete trials, the study has 1" in out
    for name in ("optimization_history.png", "parallel_coordinates.png"):
        assert (work / name).read_bytes()[:8] == PNG, name
        assert matplotlib.image.imread(str(work / name)).shape[0] > 100
        assert f"{name}: {work / name}" in out
    assert f"optuna-dashboard sqlite:///{work / 'study.db'}" in out


@pytest.mark.parametrize("case, text, flags, says", [
    ("malformed space", "space = dict(optimizer=dict(lr=loguniform(1e-2, 1e-5)))\n", (),
     "space.optimizer.lr: loguniform needs low < high"),
    ("every config invalid", "space = dict(optimizer=dict(type=choice('NoSuch1', 'NoSuch2')))\n", (),
     "--space: a space whose every config is invalid"),
    ("unreachable storage", SGD_LR, ("--storage", "postgresql://visdet@127.0.0.1:1/none"),
     "--storage: cannot connect to 'postgresql+psycopg2://visdet@127.0.0.1:1/none'"),
    ("malformed storage", SGD_LR, ("--storage", "nonsense"), "--storage: 'nonsense' is not a database URL"),
    ("unknown pruner", SGD_LR, ("--pruner", "asha"), "--pruner: unknown pruner 'asha'; choose one of median"),
    ("no trials", SGD_LR, ("--trials", "0"), "--trials: must be at least 1, got 0"),
])
def test_bad_input_is_one_message_and_exit_2_before_any_training(tmp_path, data, capsys, case, text, flags, says):
    work = tmp_path / "w"
    argv = [str(REPO / SMALL), "--space", _space(tmp_path, text), "--trials", "1", *BUDGET, "--work-dir", str(work),
            *flags, "--cfg-options", *data_options(str(data))]
    assert _tool().main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("visdet:")]
    assert len(lines) == 1 and lines[0].startswith("visdet: configuration error: ") and says in lines[0], err
    assert "Traceback" not in err and not (work / "trials").exists()


def test_without_optuna_the_tool_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError, as when it is absent
    argv = [str(REPO / SMALL), "--space", _space(tmp_path, SGD_LR), "--work-dir", str(tmp_path / "w")]
    assert _tool().main(argv) == 2
    assert 'visdet: configuration error: optuna: Optuna is not installed; install the tuning extra: pip install -e ' \
           '".[tune]"' in capsys.readouterr().err


def _worker(work: Path, space: str, url: str, study: str, data: Path, trials: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "tools/tune.py", SMALL, "--space", space, "--trials", str(trials), *BUDGET,
         "--pruner", "none", "--storage", url, "--study", study, "--work-dir", str(work), "--cfg-options",
         *data_options(str(data))],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_workers_fill_one_postgresql_study(tmp_path, data):
    url = os.environ.get("VISDET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must test the shared study on PostgreSQL: .ci/run exports VISDET_TEST_POSTGRES_URL "
                        "from tools/dev/start_postgres.sh")
        pytest.skip("no PostgreSQL: export VISDET_TEST_POSTGRES_URL=$(bash tools/dev/start_postgres.sh | tail -n 1)")
    from visdet.choosing.tuning.storage import open_storage

    # 3 trials: worker 2 gets none only if worker 1 starts faster by two whole trials.
    name, space, trials = f"two_workers_{uuid.uuid4().hex[:12]}", _space(tmp_path, SGD_LR), 3
    # Two machines: the same command, each with its own work dir, one study in the database.
    workers = [_worker(tmp_path / f"machine{i}", space, url, name, data, trials) for i in (1, 2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    storage = open_storage(url, str(tmp_path))  # postgresql:// with psycopg2, as the tool reads it
    study = optuna.load_study(study_name=name, storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == trials and all(t.state == TrialState.COMPLETE for t in finished)
    by_worker = {t.user_attrs["worker"] for t in finished}
    assert len(by_worker) == 2, by_worker  # both workers trained trials of the one study
    assert len({t.params["optimizer.lr"] for t in finished}) == trials  # same --seed, distinct draws
    for out in outputs:  # each worker's summary counts the whole study
        assert f"{trials} finished trials ({trials} complete, 0 pruned) from 2 worker(s)" in out
    optuna.delete_study(study_name=name, storage=storage)
