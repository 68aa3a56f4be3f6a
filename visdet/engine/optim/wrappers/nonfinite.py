"""The non-finite guard's stop: the error raised when too many steps in a row were skipped."""
from __future__ import annotations


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
