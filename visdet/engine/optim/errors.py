"""The one exception family for optimizer configuration mistakes.

Every message is written for the person who wrote the config: it names the
config path, what was wrong, and what would be right.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

from visdet.errors import ConfigError


class OptimizerConfigError(ConfigError):
    """A configuration mistake in ``optim_wrapper``, found at build time, before any training work.

    Args:
        message: What is wrong and how to fix it.
        key: The config path the mistake is at, e.g.
            ``'optim_wrapper.optimizer.type'``. It is prefixed to the message.
    """


class OptimizerUnavailableError(OptimizerConfigError):
    """A known optimizer that cannot run on this machine, with the reason."""


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for ``word``, case-insensitive, best first."""
    by_lower: dict[str, str] = {}
    for cand in candidates:
        by_lower.setdefault(cand.lower(), cand)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    # A prefix/substring match catches 'adam8' -> 'Adam8bit' that ratio misses.
    lowered = word.lower()
    for low, cand in by_lower.items():
        if len(matches) >= n:
            break
        if low not in matches and len(lowered) >= 3 and (low.startswith(lowered) or lowered in low):
            matches.append(low)
    return [by_lower[m] for m in matches[:n]]


def suggestion_text(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'X' or 'Y'?"`` or an empty string."""
    close = did_you_mean(word, candidates)
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    if len(quoted) == 1:
        return f"; did you mean {quoted[0]}?"
    return f"; did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?"


class NonFiniteTrainingError(RuntimeError):
    """Training stopped because too many optimizer steps in a row saw a non-finite loss or gradients.

    Raised by visdet's ``OptimWrapper`` (and ``AmpOptimWrapper`` without a
    loss scaler) when ``optim_wrapper.max_nonfinite_steps`` consecutive steps
    were skipped. It propagates out of ``runner.train()`` before the
    iteration's hooks run, so no checkpoint is written after it.

    Attributes:
        consecutive: How many steps in a row were skipped.
        total: How many steps were skipped since the wrapper was built.
    """

    def __init__(self, message: str, consecutive: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.consecutive = consecutive
        self.total = total
