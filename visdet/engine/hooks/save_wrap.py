"""Run code around every ``runner.save_checkpoint`` call, on every rank, once per runner and purpose.

mmengine calls ``before_save_checkpoint`` on rank 0 only and after the weights
are copied, and has no "after save" hook; visdet's hooks that must act around a
save (schedule-free eval mode, ZeRO shard gathering) therefore wrap the
runner's method. Each purpose marks its wrapper so a second ``before_run``
(train then test on one runner) does not wrap twice; ``functools.wraps``
carries inner marks outward, so wrappers of different purposes stack.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Save = Callable[..., Any]


def wrap_save_checkpoint(runner: Any, mark: str, around: Callable[[Save, tuple, dict], Any]) -> None:
    """Replace ``runner.save_checkpoint`` by ``around(save, args, kwargs)``, unless ``mark`` already did."""
    save = runner.save_checkpoint
    if getattr(save, mark, False):
        return

    @functools.wraps(save)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return around(save, args, kwargs)

    setattr(wrapped, mark, True)
    runner.save_checkpoint = wrapped
