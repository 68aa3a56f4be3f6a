"""The values a search-space file may draw from: ``choice``, ``loguniform``, ``uniform``, ``intuniform``.

A space file is a plain visdet config file, so it cannot hold Optuna
distributions (those need a name and a trial to be sampled); these small
records stand in for them. They are inert: :class:`~visdet.choosing.tuning.space.SearchSpace`
checks their arguments (so a mistake names its place in the space,
``space.optimizer.lr``) and turns each into the matching ``trial.suggest_*``
call. Optuna itself is never imported here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Values Optuna stores as categorical choices as they are; others are stored by a label.
_PRIMITIVE = (str, int, float, bool, type(None))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Distribution:
    """Base of the space's distributions: a check, an Optuna suggestion, probe values, a description."""

    def problem(self) -> str | None:
        """What is wrong with the arguments (a user-facing sentence), or ``None``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()


class _Range(Distribution):
    """A numeric range ``[low, high]``; subclasses say how Optuna samples it."""

    name = "range"

    def __init__(self, low: Any, high: Any) -> None:
        self.low = low
        self.high = high

    def problem(self) -> str | None:
        if not (_is_number(self.low) and _is_number(self.high)):
            return (f"{self.name}(low, high) needs two finite numbers, got {self.low!r} and {self.high!r}; "
                    f"e.g. {self.name}(1e-5, 1e-2)")
        if self.low >= self.high:
            return f"{self.name} needs low < high, got low={self.low!r} >= high={self.high!r}"
        return None

    def probe_values(self) -> tuple[float, float, float]:
        """Low, middle and high: what :func:`check_space` tries before any training."""
        return (self.low, (self.low + self.high) / 2, self.high)

    def describe(self) -> str:
        return f"{self.name}({self.low!r}, {self.high!r})"


class Uniform(_Range):
    """A float drawn uniformly from ``[low, high]`` (``trial.suggest_float``)."""

    name = "uniform"

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, float(self.low), float(self.high))


class LogUniform(_Range):
    """A float whose logarithm is uniform in ``[log low, log high]``: learning rates, weight decays."""

    name = "loguniform"

    def problem(self) -> str | None:
        found = super().problem()
        if found is None and self.low <= 0:
            return f"loguniform needs low > 0 (it samples the logarithm), got low={self.low!r}"
        return found

    def probe_values(self) -> tuple[float, float, float]:
        return (self.low, math.sqrt(self.low * self.high), self.high)

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, float(self.low), float(self.high), log=True)


class IntUniform(_Range):
    """An integer in ``[low, high]`` on a grid of ``step`` (or log-uniform with ``log=True``)."""

    name = "intuniform"

    def __init__(self, low: Any, high: Any, step: Any = 1, log: bool = False) -> None:
        super().__init__(low, high)
        self.step = step
        self.log = log

    def problem(self) -> str | None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step)):
            return (f"intuniform(low, high, step) needs integers, got {self.low!r}, {self.high!r}, "
                    f"step={self.step!r}")
        found = super().problem()
        if found:
            return found
        if self.step < 1:
            return f"intuniform needs step >= 1, got {self.step!r}"
        if (self.high - self.low) % self.step:
            return (f"intuniform's range {self.high - self.low} (high - low) is not a multiple of step={self.step}; "
                    f"e.g. high={self.low + (self.high - self.low) // self.step * self.step}")
        if self.log and (self.step != 1 or self.low < 1):
            return "intuniform with log=True needs step=1 and low >= 1 (Optuna samples the logarithm)"
        return None

    def probe_values(self) -> tuple[int, int, int]:
        if self.log:
            middle = int(round(math.sqrt(self.low * self.high)))
        else:
            middle = self.low + (self.high - self.low) // self.step // 2 * self.step
        return (self.low, middle, self.high)

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        extra = (f", step={self.step}" if self.step != 1 else "") + (", log=True" if self.log else "")
        return f"intuniform({self.low!r}, {self.high!r}{extra})"


class Choice(Distribution):
    """One of ``options``; an option that is a dict may hold distributions of its own (a conditional branch).

    Optuna stores a categorical choice by value, and only plain values
    (str, int, float, bool, None); when an option is anything else (a dict, a
    tuple) every option is stored by a label instead: a dict's ``type`` when it
    names one uniquely (``SGD#1`` for the second of two SGD options), else
    the option's ``repr`` for a tuple or list of plain values, else ``option<i>``.
    The labels also name a branch's parameters, ``optimizer.lr[SGD]``, since Optuna
    refuses one name with two distributions.
    """

    def __init__(self, *options: Any) -> None:
        self.options = options

    def problem(self) -> str | None:
        if not self.options:
            return "choice() needs at least one option, e.g. choice('AdamW', 'SGD')"
        return None

    @property
    def by_label(self) -> bool:
        return not all(isinstance(option, _PRIMITIVE) for option in self.options)

    def labels(self) -> list[Any]:
        """What Optuna stores for each option, in order (unique)."""
        if not self.by_label:
            return list(self.options)
        types = [option.get("type") if isinstance(option, Mapping) else None for option in self.options]
        labels: list[str] = []
        for index, option in enumerate(self.options):
            if isinstance(types[index], str):
                label = types[index] if types.count(types[index]) == 1 else f"{types[index]}#{index}"
            elif isinstance(option, str):
                label = option
            elif isinstance(option, (tuple, list)) and all(isinstance(v, _PRIMITIVE) for v in option):
                label = repr(option)
            elif isinstance(option, _PRIMITIVE):
                label = repr(option)
            else:
                label = f"option{index}"
            labels.append(label if label not in labels else f"{label}#{index}")
        return labels

    def option(self, label: Any) -> Any:
        """The option Optuna's stored ``label`` stands for."""
        return self.options[self.labels().index(label)]

    def describe(self) -> str:
        return f"choice({', '.join(map(str, self.labels()))})"


def choice(*options: Any) -> Choice:
    """One of ``options`` (a dict option may hold distributions: keys that exist only in that branch)."""
    return Choice(*options)


def loguniform(low: float, high: float) -> LogUniform:
    """A float, log-uniform in ``[low, high]`` (``low > 0``)."""
    return LogUniform(low, high)


def uniform(low: float, high: float) -> Uniform:
    """A float, uniform in ``[low, high]``."""
    return Uniform(low, high)


def intuniform(low: int, high: int, step: int = 1, log: bool = False) -> IntUniform:
    """An integer in ``[low, high]`` every ``step`` (log-uniform with ``log=True``)."""
    return IntUniform(low, high, step=step, log=log)


#: The names a space file sees without importing anything.
SPACE_NAMES = {"choice": choice, "loguniform": loguniform, "uniform": uniform, "intuniform": intuniform}
