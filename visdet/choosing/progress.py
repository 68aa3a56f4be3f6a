"""One readable line per finished run or trial, with the time left for the whole comparison or study.

A comparison or a study runs for minutes to hours; its runs log as usual, and
between them the person watching wants to know what finished, how it did and
how long the rest will take. The estimate is the mean duration of the runs
finished in this process times the runs left (runs skipped as already done
elsewhere do not count: their duration is not this machine's).
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 12 min``: what a person reads at a glance."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class Progress:
    """Prints ``[done/total] what: result (took, ~left)`` lines for a sequence of runs.

    Args:
        total: How many runs or trials the whole job has (``None`` when open-ended).
        kind: What one unit is called in the summary (``run``, ``trial``).
        stream: Where the lines go (stdout by default, so they sit between the runs' logs).
    """

    def __init__(self, total: int | None, kind: str = "run", stream: TextIO | None = None) -> None:
        self.total = total
        self.kind = kind
        self.stream = stream
        self.done = 0
        self.durations: list[float] = []
        self._started: float | None = None

    def start(self) -> None:
        """Mark the start of the next run (its duration counts towards the estimate)."""
        self._started = time.monotonic()

    def finished(self, label: str, result: str, counted: bool = True) -> str:
        """Report one finished run; ``counted=False`` for one skipped as already done. Returns the line."""
        self.done += 1
        took = ""
        if counted and self._started is not None:
            elapsed = time.monotonic() - self._started
            self.durations.append(elapsed)
            took = f"took {format_duration(elapsed)}"
        self._started = None
        parts = [p for p in (took, self.time_left()) if p]
        where = f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"
        line = f"{where} {label}: {result}" + (f" ({', '.join(parts)})" if parts else "")
        self.write(line)
        return line

    def time_left(self) -> str:
        """``~5 min 10 s left`` from the mean duration so far, or '' when nothing is known yet."""
        if not self.total or not self.durations:
            return ""
        left = max(0, self.total - self.done)
        if left == 0:
            return ""
        mean = sum(self.durations) / len(self.durations)
        return f"~{format_duration(mean * left)} left"

    def write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        print(line, file=stream, flush=True)
