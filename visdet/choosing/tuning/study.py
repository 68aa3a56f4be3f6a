"""Run a study: open or create it, sample, prune, and stop when it holds ``--trials`` finished trials in total.

Optuna does the searching (TPE) and the pruning; this module chooses them from
the tool's flags, runs trials one at a time through :func:`run_trial` until
the study, shared by every worker and every earlier run of the command, holds
the budget, and prints one progress line per finished trial and a summary.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
from mmengine.config import Config
from optuna.trial import FrozenTrial, TrialState

from visdet.choosing.progress import Progress, format_duration
from visdet.errors import ConfigError

PRUNERS = ("median", "hyperband", "sha", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: Seconds between looks at the study while the last trials run in other workers.
POLL_S = 2.0


def make_pruner(name: str, min_resource: int | None = None) -> optuna.pruners.BasePruner:
    """``--pruner``: Optuna's median, Hyperband or successive-halving pruner, or none.

    The step a trial reports is its training iteration at each validation, so the resources Hyperband and
    successive halving reason in are iterations: ``min_resource`` is the first validation's iteration
    (``--val-interval``) when known, so the first rung is the first report, else Optuna's estimate
    (``'auto'``: a hundredth of the first finished trial's steps) or 1 for Hyperband;
    ``max_resource='auto'`` reads the budget from the first finished trial. The median pruner waits for
    2 finished trials (Optuna's default of 5 is half of the 10-20 trial studies a detector affords) and
    prunes from the first validation on.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource or 1, max_resource="auto",
                                              reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource or "auto", reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner '{name}'; choose one of {', '.join(PRUNERS)}", "--pruner")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose random stream for trial ``n`` is seeded from ``(seed, n)``.

    Why not ``TPESampler(seed=seed)``: its one random stream lives in the
    process, so two workers started with the same ``--seed`` would draw the
    same first configurations, and a resumed study would draw the first run's
    again. Trial numbers are unique in a study (the storage hands them out),
    so seeding per number keeps workers apart and makes a trial's draw depend
    only on the seed, its number and the trials finished before it: a study
    resumed after a stop samples what an uninterrupted one would have. TPE
    keeps no other state (it reads the history from the storage), so one fresh
    TPESampler per trial loses nothing. (Several workers still interleave in
    an order that timing decides; only one worker is reproducible end to end.)
    ``(seed, n)`` goes through numpy's SeedSequence, so ``--seed 1`` is not
    ``--seed 0`` shifted by one trial.
    """

    def __init__(self, seed: int, **tpe_kwargs) -> None:
        self.seed = int(seed)
        self._tpe_kwargs = tpe_kwargs
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def _for(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        sampler = self._samplers.get(trial.number)
        if sampler is None:
            seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
            self._samplers = {trial.number: optuna.samplers.TPESampler(seed=seed, **self._tpe_kwargs)}
            sampler = self._samplers[trial.number]
        return sampler

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def open_study(storage: optuna.storages.BaseStorage, name: str, seed: int = 0, pruner: str = "median",
               min_resource: int | None = None) -> optuna.Study:
    """Create the study ``name`` (maximizing) or load it when it exists: that is how a study resumes.

    ``min_resource``: the iteration of a trial's first validation, for :func:`make_pruner`.
    """
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                    sampler=TrialSeededSampler(seed), pruner=make_pruner(pruner, min_resource))
    except ValueError as error:  # an existing study of the same name that minimizes, or several objectives
        raise ConfigError(f"study '{name}' exists in this storage and cannot be continued here: {error}; "
                          "give another --study name", "--study") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{name}' in this storage minimizes its objective; give another --study name",
                          "--study")
    return study


def worker_label() -> str:
    """``host:pid``: which worker ran a trial (user attr 'worker')."""
    return f"{socket.gethostname()}:{os.getpid()}"


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _params_text(params: dict) -> str:
    def one(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{key}={one(value)}" for key, value in params.items())


def describe(trial: FrozenTrial) -> str:
    """``mAP 0.412`` or ``pruned at iteration 4: below the median`` for a finished trial."""
    if trial.state == TrialState.COMPLETE:
        twin = trial.user_attrs.get("duplicate_of")
        return f"mAP {trial.value:.3f}" + (f" (trial {twin}'s configuration, not trained again)" if twin is not None
                                           else "")
    reason = trial.user_attrs.get("pruned_reason") or "pruned"
    at = trial.user_attrs.get("iterations")
    return f"pruned{f' after {at} iterations' if at is not None else ''}: {reason}"


def best_text(study: optuna.Study) -> str:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "no complete trial yet"
    best = max(complete, key=lambda t: t.value)
    return f"best mAP {best.value:.3f} (trial {best.number})"


class SurplusTrial(Exception):
    """A trial another worker's made unnecessary: both started when the study lacked one (recorded as FAIL)."""


def seed_trials(cfg: Config, seed: int) -> None:
    """Every trial trains from the same initialization and data order (``randomness.seed``) unless the config
    sets its own: trials then differ by their hyperparameters alone, and one configuration trains one way."""
    randomness = dict(cfg.get("randomness") or {})
    if randomness.get("seed") is None:
        randomness["seed"] = int(seed)
        cfg.randomness = randomness


def _earlier_twin(study: optuna.Study, trial: optuna.Trial, space) -> FrozenTrial | None:
    """A finished trial with the configuration ``trial`` samples (discrete spaces repeat: TPE's first trials are
    random draws). Optuna keeps a trial's suggestions, so run_trial's own sample is this one."""
    space.sample(trial)
    for other in study.get_trials(deepcopy=False, states=FINISHED):
        if other.number != trial.number and other.params == trial.params and "duplicate_of" not in other.user_attrs:
            return other
    return None


def _reuse(trial: optuna.Trial, twin: FrozenTrial) -> float:
    """The twin's outcome for a configuration trained before (trials train seeded, see :func:`seed_trials`)."""
    trial.set_user_attr("duplicate_of", twin.number)
    for key in ("overrides", "final_value"):
        trial.set_user_attr(key, twin.user_attrs.get(key))
    trial.set_user_attr("iterations", 0)
    if twin.state == TrialState.COMPLETE:
        return float(twin.value)
    trial.set_user_attr("pruned_reason", f"the configuration of trial {twin.number}, which was pruned: "
                                         f"{twin.user_attrs.get('pruned_reason') or 'pruned'}")
    raise optuna.TrialPruned()


@dataclass
class StudyResult:
    """What a finished :func:`optimize` leaves: the study and how many trials this process ran."""
    study: optuna.Study
    ran_here: int
    seconds: float


def optimize(study: optuna.Study, cfg: Config, space, work_dir: str, trials: int, iters: int | None = None,
             val_interval: int | None = None, metric: str = "coco/bbox_mAP",
             run_trial: Callable | None = None, gc_after_trial: bool = True) -> StudyResult:
    """Run trials until ``study`` holds ``trials`` finished ones (COMPLETE or PRUNED), counting every worker's.

    Each trial trains ``cfg`` with the space's sample in ``<work_dir>/trials/trial_<n>/``. Optuna's
    ``MaxTrialsCallback`` counts the same states but only after a trial ends in this worker, so another
    worker's running trial would make the study overshoot, and a full study would still run one more;
    here the count (finished plus running elsewhere) is read before each trial starts, one
    ``study.optimize(n_trials=1)`` at a time (which keeps Optuna's heartbeat, stale-trial failing and
    retries). When the last trials run in other workers, this one waits for them, so every worker returns
    with the study full. Two workers that read the count at the same moment would both start the last
    trial: the one with the higher number sees the other and stops before training, recorded as FAIL with
    user attr 'surplus' (Optuna cannot delete a trial), so the study holds exactly ``trials`` finished ones.
    ``gc_after_trial`` frees a trained model's memory before the next trial (a tenth of a second per trial).
    """
    if run_trial is None:
        from visdet.choosing.tuning.trial_run import run_trial
    if int(trials) < 1:
        raise ConfigError(f"must be at least 1, got {trials}", "--trials")
    progress = Progress(trials, kind="trial")
    label = worker_label()
    trials_dir = osp.join(work_dir, "trials")
    started = time.monotonic()
    ran_here = 0

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", label)
        counted = sorted(t.number for t in study.get_trials(deepcopy=False, states=FINISHED + (TrialState.RUNNING,)))
        if trial.number not in counted[:trials]:
            trial.set_user_attr("surplus", f"the study had its {trials} trials (finished or running) already")
            raise SurplusTrial(trial.number)
        twin = _earlier_twin(study, trial, space)
        if twin is not None:
            return _reuse(trial, twin)
        trial_dir = osp.join(trials_dir, f"trial_{trial.number}")
        return run_trial(trial, copy.deepcopy(cfg), space, trial_dir, iters=iters, val_interval=val_interval,
                         metric=metric)

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran_here
        if trial.state not in FINISHED:
            return
        ran_here += 1
        progress.done = max(progress.done, count(study, FINISHED) - 1)
        progress.finished(f"trial {trial.number} ({_params_text(trial.params)})",
                          f"{describe(trial)}; {best_text(study)}")

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress line says what Optuna's INFO line would
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            while count(study, FINISHED) < trials:
                if count(study, FINISHED + (TrialState.RUNNING,)) >= trials:
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trial is failed and re-queued
                    time.sleep(POLL_S)
                    continue
                progress.start()
                optuna.logging.set_verbosity(optuna.logging.ERROR)  # not "trial failed" for a surplus one
                study.optimize(objective, n_trials=1, callbacks=[report], gc_after_trial=gc_after_trial,
                               catch=(SurplusTrial,))
                optuna.logging.set_verbosity(optuna.logging.WARNING)
    finally:
        optuna.logging.set_verbosity(previous)
    return StudyResult(study, ran_here, time.monotonic() - started)


def summary(result: StudyResult) -> str:
    """The study in a few lines: trials by state, the best trial and its parameters, iterations trained."""
    study = result.study
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    iterations = sum(int(t.user_attrs.get("iterations") or 0) for t in finished)
    workers = sorted({t.user_attrs.get("worker", "?") for t in finished})
    lines = [f"study '{study.study_name}': {len(finished)} finished trials ({len(complete)} complete, "
             f"{len(finished) - len(complete)} pruned) from {len(workers)} worker(s), {iterations} training "
             f"iterations in all; {result.ran_here} ran here in {format_duration(result.seconds)}"]
    if complete:
        best = study.best_trial
        lines.append(f"best: trial {best.number}, mAP {best.value:.3f}: {_params_text(best.params)}")
    else:
        lines.append("best: none yet (every trial was pruned)")
    return "\n".join(lines)
