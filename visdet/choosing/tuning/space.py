"""The search space of a study: read from a config-style file, sampled by a trial, applied to a config.

A space file is Python in visdet's config style whose top-level ``space``
dict mirrors the config, with distributions where a value is to be tuned::

    space = dict(optimizer=dict(type=choice('AdamW', 'Lion', 'SGD'),
                                lr=loguniform(1e-5, 1e-2), weight_decay=loguniform(1e-4, 1e-1)))

``optimizer`` is shorthand for ``optim_wrapper.optimizer``. A ``choice`` option
may be a dict holding distributions of its own: keys that exist only in that
branch (``momentum`` for SGD only). Every mistake is a :class:`ConfigError`
before any training, keyed ``--space`` for the file and ``space.<path>`` for
a value. :func:`check_space` probes the space's corners through the same checks
``tools/train.py`` makes, so a space that can only produce invalid configs is
refused instead of being run as a study of pruned trials.
"""
from __future__ import annotations

import copy
import itertools
import os.path as osp
import traceback
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

from visdet.choosing.tuning.distributions import (SPACE_NAMES, Choice, Distribution, IntUniform, LogUniform,
                                                   Uniform, _Range, choice, intuniform, loguniform, uniform)
from visdet.errors import ConfigError
from visdet.utils.suggestions import suggestion_text

__all__ = ["Choice", "IntUniform", "LogUniform", "SearchSpace", "Uniform", "check_space", "choice", "intuniform",
           "load_space", "loguniform", "uniform"]

#: The optimizer dict: ``optimizer`` in a space is shorthand for it, and a new ``type`` replaces it whole.
OPTIMIZER_PATH = ("optim_wrapper", "optimizer")
#: Combinations of choices :func:`check_space` enumerates in full before it only covers each option once.
MAX_PROBED_COMBINATIONS = 64
EXAMPLE = "space = dict(optimizer=dict(type=choice('AdamW', 'SGD'), lr=loguniform(1e-5, 1e-2)))"


def _is_dict(node: Any) -> bool:
    """A dict of the config (mmengine's ``Config`` itself is no ``Mapping`` but reads like one)."""
    return isinstance(node, (Mapping, Config))


def param_name(path: tuple[str, ...], branches: tuple[str, ...] = ()) -> str:
    """The Optuna parameter name: the dotted path, then each enclosing branch, ``optimizer.lr[SGD]``."""
    return ".".join(path) + "".join(f"[{branch}]" for branch in branches)


class SearchSpace:
    """A checked space: what a trial samples and how the sample becomes a config.

    Args:
        tree: The ``space`` dict of a space file (checked here: bad arguments
            raise :class:`ConfigError` keyed ``space.<path>``).
    """

    def __init__(self, tree: Mapping[str, Any]) -> None:
        if not isinstance(tree, Mapping):
            raise ConfigError(f"`space` must be a dict, got {type(tree).__name__}; e.g. {EXAMPLE}", "--space")
        if not tree:
            raise ConfigError(f"`space` is empty: nothing to tune; e.g. {EXAMPLE}", "--space")
        wrapper = tree.get("optim_wrapper")
        if "optimizer" in tree and isinstance(wrapper, Mapping) and "optimizer" in wrapper:
            raise ConfigError("set either 'optimizer' (shorthand) or 'optim_wrapper.optimizer', not both",
                              "space.optimizer")
        self.tree = _shorthand(tree)
        self._check(self.tree, (), ())

    # -- checking -----------------------------------------------------------------------------------
    def _check(self, node: Any, path: tuple[str, ...], branches: tuple[str, ...]) -> None:
        if isinstance(node, Distribution):
            problem = node.problem()
            if problem:
                raise ConfigError(problem, "space." + param_name(path, branches))
            if isinstance(node, Choice):
                for label, option in zip(node.labels(), node.options):
                    self._check(option, path, branches + (str(label),))
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str) or not key or "." in key:
                    raise ConfigError(f"keys must be plain names (nest dicts for deeper keys), got {key!r}",
                                      "space." + param_name(path, branches))
                self._check(value, path + (key,), branches)
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                self._check(value, path + (str(index),), branches)

    def check_keys(self, cfg: Config) -> None:
        """Refuse a space key the config does not have (a typo would otherwise tune nothing), with close names.

        The optimizer dict is not checked: another ``type`` takes other arguments,
        and the config checks in :func:`check_space` judge them.
        """
        self._check_keys(_expand(self.tree), cfg, (), ())

    def _check_keys(self, node: Mapping[str, Any], cfg_node: Any, path: tuple[str, ...],
                    branches: tuple[str, ...]) -> None:
        for key, value in node.items():
            full = path + (key,)
            if full == OPTIMIZER_PATH:
                continue
            written = param_name(_shorten(full), branches)
            if not _is_dict(cfg_node):
                raise ConfigError(f"the config's '{'.'.join(path)}' is a {type(cfg_node).__name__}, not a dict; "
                                  f"set it whole instead", "space." + written)
            if key not in cfg_node:
                raise ConfigError(f"the config has no '{'.'.join(full)}'{suggestion_text(key, list(cfg_node))}; "
                                  f"a space may only tune keys the config has (and any key of the optimizer)",
                                  "space." + written)
            child = cfg_node[key]
            if isinstance(value, Mapping):
                self._check_keys(value, child, full, branches)
            elif isinstance(value, Choice):
                for label, option in zip(value.labels(), value.options):
                    if isinstance(option, Mapping) and _is_dict(child):
                        self._check_keys(option, child, full, branches + (str(label),))

    # -- sampling and applying ----------------------------------------------------------------------
    def sample(self, trial: Any) -> dict[str, Any]:
        """Ask ``trial`` (an Optuna trial, or anything with its ``suggest_*``) for one value of each parameter.

        Returns nested config overrides, e.g. ``{'optim_wrapper': {'optimizer':
        {'type': 'SGD', 'lr': 0.01, 'momentum': 0.9}}}``; only the chosen
        branch's parameters are sampled.
        """
        return _expand(_sample(self.tree, (), (), trial))

    def apply(self, cfg: Config, overrides: Mapping[str, Any]) -> Config:
        """A new Config: ``cfg`` with ``overrides`` merged in.

        One exception to merging: an optimizer override whose ``type`` differs
        from the config's replaces the whole optimizer dict, since the config's
        other hyperparameters (``betas`` of AdamW) would not fit another type (SGD).
        """
        new = copy.deepcopy(cfg)
        _merge(new, overrides, ())
        return new

    def parameters(self) -> dict[str, Distribution]:
        """Every parameter of every branch, by Optuna name."""
        found: dict[str, Distribution] = {}
        _collect(self.tree, (), (), found)
        return found

    def describe(self) -> str:
        """One line per parameter, ``optimizer.lr[SGD]: loguniform(0.001, 0.1)``."""
        return "\n".join(f"{name}: {dist.describe()}" for name, dist in self.parameters().items())


def _shorten(path: tuple[str, ...]) -> tuple[str, ...]:
    """A config path as a space may write it (``optim_wrapper.optimizer.lr`` -> ``optimizer.lr``)."""
    return ("optimizer",) + path[2:] if path[:2] == OPTIMIZER_PATH else path


def _shorthand(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``optim_wrapper.optimizer`` written in full moved to ``optimizer``: one spelling, one set of parameter names
    (a study resumed with the other spelling must find its parameters again)."""
    out = dict(tree)
    wrapper = out.get("optim_wrapper")
    if isinstance(wrapper, Mapping) and "optimizer" in wrapper:
        rest = {key: value for key, value in wrapper.items() if key != "optimizer"}
        out["optimizer"] = wrapper["optimizer"]
        if rest:
            out["optim_wrapper"] = rest
        else:
            del out["optim_wrapper"]
    return out


def _expand(values: Mapping[str, Any]) -> dict[str, Any]:
    """The shorthand ``optimizer`` moved under ``optim_wrapper``."""
    out = dict(values)
    if "optimizer" in out:
        wrapper = dict(out.get("optim_wrapper") or {})
        wrapper["optimizer"] = out.pop("optimizer")
        out["optim_wrapper"] = wrapper
    return out


def _sample(node: Any, path: tuple[str, ...], branches: tuple[str, ...], trial: Any) -> Any:
    if isinstance(node, Choice):
        label = trial.suggest_categorical(param_name(path, branches), node.labels())
        return _sample(node.option(label), path, branches + (str(label),), trial)
    if isinstance(node, _Range):
        return node.suggest(trial, param_name(path, branches))
    if isinstance(node, Mapping):
        return {key: _sample(value, path + (key,), branches, trial) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_sample(value, path + (str(i),), branches, trial) for i, value in enumerate(node))
    return copy.deepcopy(node)


def _collect(node: Any, path: tuple[str, ...], branches: tuple[str, ...], found: dict[str, Distribution]) -> None:
    if isinstance(node, Distribution):
        found[param_name(path, branches)] = node
    if isinstance(node, Choice):
        for label, option in zip(node.labels(), node.options):
            _collect(option, path, branches + (str(label),), found)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            _collect(value, path + (key,), branches, found)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _collect(value, path + (str(index),), branches, found)


def _merge(target: Any, overrides: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, value in overrides.items():
        full = path + (key,)
        current = target.get(key) if _is_dict(target) else None
        replace = (full == OPTIMIZER_PATH and isinstance(value, Mapping) and "type" in value
                   and _is_dict(current) and value["type"] != current.get("type"))
        if isinstance(value, Mapping) and _is_dict(current) and not replace:
            _merge(current, value, full)
        else:
            target[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)


def load_space(path: str) -> SearchSpace:
    """Run the space file at ``path`` and check its ``space`` (ConfigError keyed ``--space`` or ``space.<path>``).

    The file is executed here rather than by ``mmengine.Config.fromfile``:
    mmengine parses a config's names itself and has no way to pre-bind
    ``choice``/``loguniform``, which a space file uses without imports. The
    distributions stay importable (``from visdet.choosing.tuning.space import
    choice``) for files that prefer to say where they come from.
    """
    if not osp.isfile(path):
        raise ConfigError(f"space file '{path}' does not exist; write one with e.g. {EXAMPLE}", "--space")
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    try:
        code = compile(source, path, "exec")
    except SyntaxError as error:
        raise ConfigError(f"'{path}' line {error.lineno}: invalid Python: {error.msg}", "--space") from None
    namespace: dict[str, Any] = {"__file__": osp.abspath(path), "__name__": "visdet_space", **SPACE_NAMES}
    try:
        exec(code, namespace)  # noqa: S102 - the user's own space file, as mmengine runs config files
    except Exception as error:  # any failure of the user's file is reported as its mistake, with the line
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == path]
        where = f" line {lines[-1]}" if lines else ""
        raise ConfigError(f"'{path}'{where} failed to run: {type(error).__name__}: {error}", "--space") from None
    if "space" not in namespace:
        raise ConfigError(f"'{path}' defines no top-level `space`; e.g. {EXAMPLE}", "--space")
    return SearchSpace(namespace["space"])


class _ProbeTrial:
    """Stands in for an Optuna trial in :func:`check_space`: fixed choices, every range at one of its corners."""

    def __init__(self, assignment: Mapping[str, Any], corner: int, ranges: Mapping[str, Distribution]) -> None:
        self.assignment = assignment
        self.corner = corner
        self.ranges = ranges
        self.chosen: dict[str, Any] = {}
        self.open: list[tuple[str, list[Any]]] = []  # choices met that the assignment does not fix

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if name not in self.assignment:
            self.open.append((name, list(choices)))
        self.chosen[name] = self.assignment.get(name, choices[0])
        return self.chosen[name]

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self._pick(name)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._pick(name)

    def _pick(self, name: str) -> Any:
        return self.ranges[name].probe_values()[self.corner]  # type: ignore[attr-defined]


def _assignments(space: SearchSpace) -> list[dict[str, Any]]:
    """Combinations of choices that cover every branch: all of them when few, else each option at least once."""
    done: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = [{}]
    ranges = space.parameters()
    while pending and len(done) + len(pending) <= MAX_PROBED_COMBINATIONS:
        assignment = pending.pop()
        probe = _ProbeTrial(assignment, 0, ranges)
        space.sample(probe)
        if probe.open:
            name, choices = probe.open[0]
            pending.extend({**assignment, name: label} for label in reversed(choices))
        else:
            done.append(probe.chosen)
    if not pending:
        return done
    # Too many combinations: row k takes option k of every choice (the last one when it has fewer).
    widest = max(len(d.labels()) for d in ranges.values() if isinstance(d, Choice))
    return [{name: d.labels()[min(k, len(d.labels()) - 1)] for name, d in ranges.items() if isinstance(d, Choice)}
            for k in range(widest)]


def _indented(reason: str) -> str:
    """A multi-line reason (an error and its valid arguments) kept under its branch in a list."""
    return reason.replace("\n", "\n    ")


def check_space(cfg: Config, space: SearchSpace) -> list[str]:
    """Probe ``space`` on ``cfg`` before any training; refuse it when no probed config passes the checks.

    Every combination of choices (each option at least once when there are more
    than :data:`MAX_PROBED_COMBINATIONS`) is tried with all ranges at their
    low, middle and high values, through ``tools/train.py``'s checks
    (:func:`visdet.choosing.prepare.check_run_config`; no model or data is built).
    Returns one warning per branch (a choice's option) that never passed:
    its trials would all be pruned.
    """
    from visdet.choosing.prepare import check_run_config

    space.check_keys(cfg)
    ranges = space.parameters()
    passed: dict[tuple[str, Any], bool] = {}
    reasons: dict[tuple[str, Any], str] = {}
    any_passed = False
    first_reason = ""
    for assignment, corner in itertools.product(_assignments(space), range(3)):
        probe = _ProbeTrial(assignment, corner, ranges)
        try:
            check_run_config(space.apply(cfg, space.sample(probe)))
            ok, reason = True, ""
        except (ValueError, TypeError) as error:  # ConfigError is a ValueError; a value a check rejects raw too
            ok, reason = False, str(error)
        any_passed |= ok
        first_reason = first_reason or reason
        for branch in probe.chosen.items():
            passed[branch] = passed.get(branch, False) or ok
            if not ok:
                reasons.setdefault(branch, reason)
    failing = [branch for branch, ok in passed.items() if not ok]
    if not any_passed:
        listed = "".join(f"\n  {name}={label}: {_indented(reasons[(name, label)])}" for name, label in failing)
        raise ConfigError("a space whose every config is invalid: no probed config (each choice, ranges at low, "
                          "middle and high) passes visdet's config checks, so every trial would be pruned"
                          + (listed or f"\n  {_indented(first_reason)}"), "--space")
    return [f"space.{name}: the branch {label!r} never passed visdet's config checks in the probes, so its trials "
            f"will be pruned: {reasons[(name, label)]}" for name, label in failing]
