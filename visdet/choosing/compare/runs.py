"""One comparison run per optimizer: its checked config in its own work dir, and training it with tools/train.py.

Every run is the base config with only the optimizer replaced (and, with
``--iters``, the same iteration budget and schedule shape), so they share the
seed, the data order and the schedule. All configs are checked before the
first run trains: a mistake in the fifth optimizer's settings is its row's
reason, found in seconds, not after four trainings.

Each run is ``tools/train.py`` in a child process, its log on the console as
usual: one process per run keeps runs independent (mmengine's global registries,
loggers and the CUDA allocator's peak start fresh) and makes resuming a run
exactly what ``--resume`` does. A run whose record says finished is not trained
again; one that left a checkpoint is resumed from it.
"""
from __future__ import annotations

import collections
import copy
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmengine.config import Config, ConfigDict

from visdet.choosing.budget import iterations_per_epoch, set_iteration_budget
from visdet.choosing.compare.hyperparams import Hyperparams, choose_hyperparams
from visdet.choosing.compare.selection import Choice
from visdet.choosing.prepare import check_run_config
from visdet.engine.hooks.run_record_hook import read_record
from visdet.engine.launch import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, prepare_embedded_data
from visdet.errors import ConfigError

#: The training tool every run is (a checkout's; the comparison runs from one, as tools/ does).
TRAIN_TOOL = Path(__file__).resolve().parents[3] / "tools" / "train.py"
#: What tools/train.py prints before the non-finite guard's stop message (visdet.engine.launch).
DIVERGED_PREFIX = "visdet: training error:"
#: The comparison's note of a run's end that its record cannot hold (a diverged run has no after_run).
OUTCOME_FILE = "outcome.json"
#: Lines of a run's output kept to explain a failure.
TAIL_LINES = 40

FINISHED, DIVERGED, FAILED, NOT_RUN, PENDING = "finished", "diverged", "failed", "not run", "pending"


@dataclass
class Run:
    """One optimizer's run: where it lives, its settings, and how it ended."""

    choice: Choice
    work_dir: Path
    hyperparams: Hyperparams | None = None
    status: str = PENDING
    reason: str = ""  # why it was not run, or how it failed
    skipped: bool = False  # already finished (or diverged) before this comparison started
    resumed: bool = False
    stopped_after: int | None = None  # diverged: the skipped steps in a row that stopped it
    record: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.work_dir / "config.py"

    @property
    def name(self) -> str:
        return self.choice.name


def run_dir_name(name: str) -> str:
    """A folder name for an optimizer name (aliases may hold ``:``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plan_runs(base: Config, choices: list[Choice], overrides: dict[str, dict[str, Any]], comparison_dir: Path,
              iters: int | None = None, val_interval: int | None = None) -> list[Run]:
    """Each optimizer's config, checked and dumped to ``runs/<name>/config.py``; unrunnable ones get a reason.

    Mistakes of the command (``--iters``, ``--val-interval``) raise :class:`ConfigError`; a mistake of one
    optimizer's config is that run's reason.
    """
    if val_interval is not None and iters is None:
        raise ConfigError("needs --iters (validations are every --val-interval iterations of that budget)",
                          "--val-interval")
    per_epoch = None
    if iters is not None:
        prepare_embedded_data(base)  # the budget counts the train set's iterations per epoch
        per_epoch = iterations_per_epoch(base)
        set_iteration_budget(copy.deepcopy(base), iters, val_interval, per_epoch)  # --iters mistakes before any run
    config_optimizer = (base.get("optim_wrapper") or {}).get("optimizer")
    runs = []
    for choice in choices:
        run = Run(choice, comparison_dir / "runs" / run_dir_name(choice.name))
        run.hyperparams = choose_hyperparams(choice, config_optimizer, overrides)
        runs.append(run)
        if choice.why_not:
            run.status, run.reason = NOT_RUN, choice.why_not
            continue
        cfg = run_config(base, choice, run.hyperparams, run.work_dir, iters, val_interval, per_epoch)
        try:
            check_run_config(cfg)
        except ConfigError as error:
            run.status, run.reason = NOT_RUN, str(error)
            continue
        if not started(run.work_dir):  # a started run continues with the config its checkpoints were made with
            run.work_dir.mkdir(parents=True, exist_ok=True)
            cfg.dump(str(run.config_path))
    return runs


def started(work_dir: Path) -> bool:
    """Whether a run has trained in ``work_dir`` (it has a record or a checkpoint)."""
    return (work_dir / "config.py").is_file() and ((work_dir / "run_record.json").is_file() or has_checkpoint(work_dir))


def run_config(base: Config, choice: Choice, hyperparams: Hyperparams, work_dir: Path, iters: int | None,
               val_interval: int | None, per_epoch: int | None) -> Config:
    """The base config with this optimizer, the budget and the run record hook."""
    cfg = copy.deepcopy(base)
    cfg.optim_wrapper.optimizer = ConfigDict(type=choice.name, **hyperparams.values)
    if hyperparams.paramwise_cfg is not None:
        cfg.optim_wrapper.pop("paramwise_cfg", None)
        if hyperparams.paramwise_cfg:
            cfg.optim_wrapper.paramwise_cfg = ConfigDict(hyperparams.paramwise_cfg)
    if iters is not None:
        set_iteration_budget(cfg, iters, val_interval, per_epoch)
    hooks = list(cfg.get("custom_hooks") or [])
    if not any(h.get("type") == "RunRecordHook" for h in hooks):
        hooks.append(dict(type="RunRecordHook"))
    cfg.custom_hooks = hooks
    cfg.work_dir = str(work_dir)
    return cfg


def has_checkpoint(work_dir: Path) -> bool:
    """Whether an interrupted run left a checkpoint to resume from."""
    return resume_from(work_dir) is not None


def resume_from(work_dir: Path) -> str | None:
    """The checkpoint to resume: the one mmengine's ``last_checkpoint`` names, else the newest saved.

    visdet's CheckpointHook writes the checkpoint (atomically) before the pointer, so a run killed between
    the two has a complete newest checkpoint that the pointer does not name yet.
    """
    pointer = work_dir / "last_checkpoint"
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and Path(named).is_file():
        return named
    saved = [p for p in (*work_dir.glob("iter_*.pth"), *work_dir.glob("epoch_*.pth"))
             if p.stem.split("_")[-1].isdigit()]
    return str(max(saved, key=lambda p: int(p.stem.split("_")[-1]))) if saved else None


def read_outcome(work_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((work_dir / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return {}


def train(run: Run, console: TextIO | None = None) -> Run:
    """Train ``run`` (skip a finished one, resume an interrupted one); sets its status, reason and record."""
    console = console if console is not None else sys.stdout
    run.record = read_record(run.work_dir)
    outcome = read_outcome(run.work_dir)
    if run.record and run.record.get("finished"):
        run.status, run.skipped = FINISHED, True
        return run
    if outcome.get("status") == DIVERGED:  # the guard stops it the same way again: not retried
        run.status, run.reason, run.skipped = DIVERGED, outcome.get("reason", ""), True
        run.stopped_after = outcome.get("stopped_after")
        return run
    checkpoint = resume_from(run.work_dir)
    run.resumed = checkpoint is not None
    command = [sys.executable, str(TRAIN_TOOL), str(run.config_path), "--work-dir", str(run.work_dir)]
    if checkpoint is not None:
        command += ["--resume", checkpoint]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          bufsize=1) as child:
        for line in child.stdout or ():
            console.write(line)
            tail.append(line.rstrip("\n"))
        status = child.wait()
    console.flush()
    run.record = read_record(run.work_dir)
    if status == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    error_lines = [t for t in tail if t.startswith("visdet: ")]
    if status == EXIT_OK and run.record and run.record.get("finished"):
        run.status = FINISHED
    elif status == 1 and any(t.startswith(DIVERGED_PREFIX) for t in tail):
        message = next(t for t in tail if t.startswith(DIVERGED_PREFIX))[len(DIVERGED_PREFIX):].strip()
        found = re.search(r"(\d+) optimizer steps in a row", message)  # NonFiniteTrainingError's wording
        run.status, run.reason = DIVERGED, message
        run.stopped_after = int(found.group(1)) if found else None
        (run.work_dir / OUTCOME_FILE).write_text(json.dumps(dict(status=DIVERGED, reason=message,
                                                                 stopped_after=run.stopped_after)))
    else:
        what = "configuration error" if status == EXIT_CONFIG else f"exit status {status}"
        last = error_lines[-1] if error_lines else (tail[-1] if tail else "no output")
        run.status, run.reason = FAILED, f"{what}: {last}"
    return run
