"""The study around the trials: storage URLs, seeding across workers and resumes, the shared budget, the outputs.

A trial's training is tools/tune.py's end-to-end test (tests/tools/test_tune.py); here the objective is a
stand-in with run_trial's signature so the orchestration's promises are checked in milliseconds.
"""
from __future__ import annotations

import threading
import time

import matplotlib.image
import optuna
import pytest
from mmengine.config import Config
from optuna.trial import TrialState

from visdet.choosing.tuning import outputs
from visdet.choosing.tuning.space import SearchSpace, choice, loguniform
from visdet.choosing.tuning.storage import default_url, open_storage
from visdet.choosing.tuning.study import count, make_pruner, open_study, optimize, seed_trials, summary
from visdet.errors import ConfigError

SPACE = SearchSpace({"optimizer": {"lr": loguniform(1e-4, 1e-1)}})
CFG = Config(dict(optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, weight_decay=1e-4)), work_dir="w"))


def fake_run_trial(trial, cfg, space, work_dir, iters=None, val_interval=None, metric="coco/bbox_mAP"):
    """run_trial's contract without training: sample, record the overrides, return a value from the lr."""
    overrides = space.sample(trial)
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("iterations", iters or 4)
    lr = overrides["optim_wrapper"]["optimizer"]["lr"]
    if lr > 0.05:
        trial.set_user_attr("pruned_reason", "lr above 0.05 (the stand-in's rule)")
        raise optuna.TrialPruned()
    return 1.0 - abs(lr - 0.01)


#: optimize()'s keywords for the stand-in (which allocates nothing for a garbage collection to free).
FAKE = dict(run_trial=fake_run_trial, gc_after_trial=False)


def lrs(study: optuna.Study) -> list[float]:
    return [t.params["optimizer.lr"] for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.mark.parametrize("url, says", [
    ("not a url", "is not a database URL"),
    ("nosuchdb://host/x", "is not a database SQLAlchemy knows"),
    ("mysql+nosuchdriver://u@h/db", "'nosuchdriver' in 'mysql+nosuchdriver://u@h/db' is not a driver SQLAlchemy"),
    ("sqlite:////no/such/folder/study.db", "the folder of the SQLite file"),
])
def test_a_bad_storage_url_is_a_config_error_on_storage(tmp_path, url, says):
    with pytest.raises(ConfigError) as caught:
        open_storage(url, str(tmp_path))
    assert caught.value.key == "--storage" and says in str(caught.value)


def test_a_missing_postgresql_driver_says_what_to_install(tmp_path, monkeypatch):
    from visdet.choosing.tuning import storage

    monkeypatch.setattr(storage.importlib.util, "find_spec", lambda name: None)  # as if psycopg2 were absent
    for url in ("postgresql://u:secret@localhost/db", "postgresql+psycopg2://u:secret@localhost/db"):
        with pytest.raises(ConfigError, match=r"--storage: .*postgresql.*pip install psycopg2-binary") as caught:
            open_storage(url, str(tmp_path))
        assert "secret" not in str(caught.value)  # the password is not printed


def test_an_unreachable_server_is_a_config_error_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match=r"--storage: cannot connect to 'postgresql\+psycopg2://visdet@127.0.0.1:1/none"
                                          r"': .*Connection refused.*tools/dev/start_postgres.sh"):
        open_storage("postgresql://visdet@127.0.0.1:1/none", str(tmp_path))


def test_the_default_storage_is_an_sqlite_file_in_the_work_dir(tmp_path):
    storage = open_storage(None, str(tmp_path / "w"))
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "w" / "study.db").is_file()
    assert default_url(str(tmp_path / "w")) == f"sqlite:///{tmp_path / 'w' / 'study.db'}"
    assert optuna.load_study(study_name="s", storage=default_url(str(tmp_path / "w"))).study_name == "s"


def test_the_pruners_and_an_unknown_one():
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("sha"), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match="--pruner: unknown pruner 'asha'; choose one of median, hyperband"):
        make_pruner("asha")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # ask() below, as another worker would
def test_seeding_repeats_a_study_and_keeps_workers_and_seeds_apart(tmp_path):
    def run(storage, name, seed, n):
        study = open_study(storage, name, seed=seed, pruner="none")
        optimize(study, CFG, SPACE, str(tmp_path), n, **FAKE)
        return study

    storage = open_storage(None, str(tmp_path))
    first, again, other_seed = (lrs(run(storage, name, seed, 3)) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert first == again and len(set(first)) == 3
    assert not set(first) & set(other_seed)
    # Resumed: 1 trial, then 2 more, draws what the uninterrupted 3 drew.
    run(storage, "d", 0, 1)
    assert lrs(run(storage, "d", 0, 3)) == first
    # Two workers with the same --seed on one study (a plain TPESampler(seed=0) each would draw the same lr first).
    one, two = (open_study(storage, "e", seed=0, pruner="none") for _ in range(2))
    trial_a, trial_b = one.ask(), two.ask()
    assert SPACE.sample(trial_a) != SPACE.sample(trial_b)


def test_optimize_fills_one_budget_across_runs_and_counts_pruned_trials(tmp_path, capsys):
    storage = open_storage(None, str(tmp_path))
    study = open_study(storage, "budget", seed=3, pruner="none")
    study.enqueue_trial({"optimizer.lr": 0.09})  # pruned by the stand-in
    result = optimize(study, CFG, SPACE, str(tmp_path), 3, iters=2, **FAKE)
    assert result.ran_here == 3 and count(study, (TrialState.PRUNED,)) == 1
    out = capsys.readouterr().out
    assert "[1/3] trial 0 (optimizer.lr=0.09): pruned after 2 iterations: lr above 0.05" in out
    assert "; no complete trial yet (took" in out and "[3/3] trial 2" in out and "best mAP" in out
    assert optimize(study, CFG, SPACE, str(tmp_path), 3, iters=2, **FAKE).ran_here == 0  # full
    assert optimize(study, CFG, SPACE, str(tmp_path), 5, iters=2, **FAKE).ran_here == 2
    complete = [t.state for t in study.trials].count(TrialState.COMPLETE)
    assert len(study.trials) == 5 and TrialState.RUNNING not in [t.state for t in study.trials]
    assert {t.user_attrs["worker"].split(":")[-1] for t in study.trials} == {str(__import__("os").getpid())}
    text = summary(result)
    assert f"5 finished trials ({complete} complete, {5 - complete} pruned) from 1 worker(s), 10 training " in text
    assert f"best: trial {study.best_trial.number}" in text


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # ask() below, as another worker would
@pytest.mark.parametrize("raced", [False, True])
def test_a_worker_waits_for_the_last_trial_running_elsewhere(tmp_path, monkeypatch, raced):
    """1 of 2 trials finished, the other running in another worker: optimize waits instead of overshooting.

    ``raced``: this worker read the count just before the other worker's trial started, so it starts a third
    trial; that one sees the other and stops untrained, a FAIL marked surplus, and the study holds 2.
    """
    from visdet.choosing.tuning import study as studies

    monkeypatch.setattr(studies, "POLL_S", 0.05)
    storage = open_storage(None, str(tmp_path))
    study = open_study(storage, "wait", pruner="none")
    optimize(study, CFG, SPACE, str(tmp_path), 1, **FAKE)
    elsewhere = study.ask()  # RUNNING, as in another worker
    if raced:
        stale = iter([1])
        real_count = studies.count
        monkeypatch.setattr(studies, "count", lambda s, states: (next(stale, None) if TrialState.RUNNING in states
                                                                 else None) or real_count(s, states))
    threading.Timer(0.5, lambda: study.tell(elsewhere, 0.5)).start()
    started = time.monotonic()
    assert optimize(study, CFG, SPACE, str(tmp_path), 2, **FAKE).ran_here == 0
    assert time.monotonic() - started >= 0.4
    states = [t.state for t in study.trials]
    assert states == ([TrialState.COMPLETE] * 2 + [TrialState.FAIL] if raced else [TrialState.COMPLETE] * 2)
    if raced:
        assert "already" in study.trials[2].user_attrs["surplus"] and not study.trials[2].params


def test_outputs_say_which_plot_cannot_be_drawn_yet(tmp_path):
    storage = open_storage(None, str(tmp_path))
    study = open_study(storage, "plots", pruner="none")
    assert outputs.write_best_config(study, CFG, SPACE, str(tmp_path)) is None
    assert set(outputs.write_plots(study, str(tmp_path)).values()) == {"not drawn: no complete trial yet"}
    optimize(study, CFG, SPACE, str(tmp_path), 1, **FAKE)
    drawn = outputs.write_plots(study, str(tmp_path))
    assert drawn["param_importances.png"] == "not drawn: needs 2 complete trials, the study has 1"
    assert (tmp_path / "optimization_history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = outputs.write_best_config(study, CFG, SPACE, str(tmp_path))
    best = Config.fromfile(str(path))
    assert best.optim_wrapper.optimizer.lr == study.best_trial.params["optimizer.lr"]
    assert "work_dir" not in best and path.read_text().startswith("# The best trial of Optuna study 'plots'")
    optimize(study, CFG, SPACE, str(tmp_path), 3, **FAKE)  # 2 complete at least (lr <= 0.05)
    assert outputs.write_plots(study, str(tmp_path)) == {name: str(tmp_path / name) for name in outputs.PLOTS}
    for name in outputs.PLOTS:
        assert matplotlib.image.imread(str(tmp_path / name)).shape[0] > 100


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # ask() as the killed worker did
def test_a_dead_workers_trial_is_failed_and_run_again_with_its_parameters(tmp_path, monkeypatch):
    """The heartbeat: a RUNNING trial whose worker stopped beating is failed after the grace period and
    re-queued with the same parameters (RetryHeartbeatStaleTrialCallback); the next worker runs it."""
    from visdet.choosing.tuning import storage as storages

    monkeypatch.setattr(storages, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(storages, "GRACE_PERIOD_S", 1)
    monkeypatch.setattr("visdet.choosing.tuning.study.POLL_S", 0.05)
    storage = open_storage(None, str(tmp_path))
    study = open_study(storage, "dead", pruner="none")
    dead = study.ask()  # the worker that took it, then was killed: it sampled, beat once, then nothing
    lr = SPACE.sample(dead)["optim_wrapper"]["optimizer"]["lr"]
    storage.record_heartbeat(dead._trial_id)
    time.sleep(1.5)
    result = optimize(study, CFG, SPACE, str(tmp_path), 1, **FAKE)
    assert result.ran_here == 1
    states = [(t.state, t.params) for t in study.trials]
    assert states == [(TrialState.FAIL, {"optimizer.lr": lr}), (TrialState.COMPLETE, {"optimizer.lr": lr})]
    assert study.trials[1].system_attrs["failed_trial"] == 0  # Optuna's record of which trial it retries


def test_a_configuration_drawn_again_is_not_trained_again(tmp_path, capsys):
    """A discrete space repeats configurations; a repeat takes its first trial's value or pruning, 0 iterations."""
    trained: list[int] = []

    def counting(trial, *args, **kwargs):
        trained.append(trial.number)
        return fake_run_trial(trial, *args, **kwargs)

    space = SearchSpace({"optimizer": {"lr": choice(0.01, 0.09)}})  # 0.09: pruned by the stand-in
    study = open_study(open_storage(None, str(tmp_path)), "repeats", pruner="none")
    optimize(study, CFG, space, str(tmp_path), 5, iters=3, run_trial=counting, gc_after_trial=False)
    first = {}
    for trial in study.trials:
        key = trial.params["optimizer.lr"]
        if key not in first:
            first[key] = trial
            assert trial.user_attrs["iterations"] == 3 and "duplicate_of" not in trial.user_attrs
            continue
        twin = first[key]
        assert trial.user_attrs["duplicate_of"] == twin.number and trial.user_attrs["iterations"] == 0
        assert (trial.state, trial.value) == (twin.state, twin.value)
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["pruned_reason"].startswith(f"the configuration of trial {twin.number}, which")
    assert sorted(trained) == sorted(t.number for t in first.values()) and len(first) == 2
    assert "configuration, not trained again)" in capsys.readouterr().out


def test_trials_train_with_the_seed_unless_the_config_has_one():
    cfg = Config(dict(CFG))
    seed_trials(cfg, 7)
    assert cfg.randomness == {"seed": 7}
    cfg = Config(dict(CFG, randomness=dict(seed=3, deterministic=True)))
    seed_trials(cfg, 7)
    assert cfg.randomness == {"seed": 3, "deterministic": True}


def test_a_worker_that_loses_the_race_to_create_the_tables_opens_the_storage_on_retry(tmp_path, monkeypatch):
    """Workers started together on a new PostgreSQL database race to create Optuna's tables; the losers'
    duplicate-type error is retried (the tables then exist), and a persistent one is one --storage line."""
    from sqlalchemy import exc as sa_exc

    from visdet.choosing.tuning import storage as storage_module
    from visdet.errors import ConfigError

    real = optuna.storages.RDBStorage
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            orig = Exception('duplicate key value violates unique constraint "pg_type_typname_nsp_index"')
            raise sa_exc.IntegrityError("CREATE TABLE studies", {}, orig)
        return real(*args, **kwargs)

    monkeypatch.setattr(storage_module.time, "sleep", lambda s: None)
    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert isinstance(open_storage(None, str(tmp_path)), real) and len(calls) == 2

    def always(*args, **kwargs):
        raise sa_exc.ProgrammingError("CREATE TABLE studies", {}, Exception('relation "studies" already exists'))

    monkeypatch.setattr(optuna.storages, "RDBStorage", always)
    with pytest.raises(ConfigError, match="already exists") as info:
        open_storage(None, str(tmp_path / "other"))
    assert info.value.key == "--storage"
