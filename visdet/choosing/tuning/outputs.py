"""What a study leaves in its work dir: the best trial as a runnable config, and Optuna's plots as PNG.

``best_config.py`` is the base config (with the command's ``--cfg-options``)
plus the best trial's overrides, applied the way the trial applied them
(``SearchSpace.apply``), so ``tools/train.py best_config.py`` trains what the
study found, on the config's own schedule rather than the trial's budget.
The plots are Optuna's matplotlib ones; each needs some finished trials
(importances two complete trials with different parameters), and one that
cannot be drawn yet is reported with its reason instead of failing the study.
"""
from __future__ import annotations

import copy
import os
import os.path as osp
import warnings
from pathlib import Path

import optuna
from mmengine.config import Config
from optuna.trial import TrialState

BEST_CONFIG = "best_config.py"
#: PNG file name -> (Optuna's plot function name, what it shows).
PLOTS = {
    "optimization_history.png": ("plot_optimization_history", "mAP of each trial and the best so far"),
    "param_importances.png": ("plot_param_importances", "how much each parameter explains of the mAP"),
    "parallel_coordinates.png": ("plot_parallel_coordinate", "each trial's parameters and mAP"),
}
#: Keys of a trial's config that belong to that run, not to a config someone trains again.
_RUN_KEYS = ("work_dir", "experiment_name", "resume", "load_from")


def best_config(study: optuna.Study, cfg: Config, space) -> Config:
    """``cfg`` with the best trial's overrides (user attr 'overrides'); ValueError when no trial is complete."""
    best = study.best_trial  # ValueError: no complete trial
    overrides = best.user_attrs.get("overrides")
    if overrides is None:
        raise ValueError(f"trial {best.number} recorded no 'overrides'; it was not run by visdet's tuner")
    out = space.apply(copy.deepcopy(cfg), overrides)
    for key in _RUN_KEYS:
        out.pop(key, None)
    return out


def write_best_config(study: optuna.Study, cfg: Config, space, work_dir: str) -> Path | None:
    """``<work_dir>/best_config.py`` with a header naming the study, trial and value; None without a complete trial."""
    try:
        out = best_config(study, cfg, space)
    except ValueError:
        return None
    best = study.best_trial
    path = Path(work_dir, BEST_CONFIG)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: workers sharing a work dir each write it at the end, and a reader sees one whole.
    partial = path.with_name(f".{BEST_CONFIG}.{os.getpid()}.py")
    out.dump(str(partial))
    header = (f"# The best trial of Optuna study '{study.study_name}' (visdet tools/tune.py): trial {best.number}, "
              f"validation mAP {best.value:.4f}\n"
              f"# after {best.user_attrs.get('iterations', '?')} iterations; its overrides: "
              f"{best.user_attrs.get('overrides')}\n"
              "# Train it: python tools/train.py " + str(path) + "\n")
    partial.write_text(header + partial.read_text())
    os.replace(partial, path)
    return path


def _cannot_draw(study: optuna.Study, plot: str) -> str | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "no complete trial yet"
    if plot == "plot_param_importances":
        if len(complete) < 2:
            return f"needs 2 complete trials, the study has {len(complete)}"
        varied = {name for name in complete[0].params if len({repr(t.params.get(name)) for t in complete}) > 1}
        if not varied:
            return "the complete trials share every parameter value, so none explains a difference"
    return None


def write_plots(study: optuna.Study, work_dir: str) -> dict[str, str]:
    """Draw each of :data:`PLOTS` into ``work_dir``; returns file name -> path written, or why it was not."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; no display is needed or wanted
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    results: dict[str, str] = {}
    for filename, (plot, _) in PLOTS.items():
        reason = _cannot_draw(study, plot)
        if reason is not None:
            results[filename] = f"not drawn: {reason}"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", "Attempting to set identical low and high")  # one trial's axis
            try:
                axes = getattr(optuna_plots, plot)(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances of a constant value
                results[filename] = f"not drawn: {error}"
                continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
        path = osp.join(work_dir, filename)
        partial = osp.join(work_dir, f".{os.getpid()}.{filename}")
        figure.savefig(partial, dpi=100, bbox_inches="tight", format="png")
        plt.close(figure)
        os.replace(partial, path)
        results[filename] = path
    return results
