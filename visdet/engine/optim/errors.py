"""The one exception family for optimizer configuration mistakes.

Every message is written for the person who wrote the config: it names the
config path, what was wrong, and what would be right.
"""
from __future__ import annotations

from visdet.errors import ConfigError

#: The config path optimizer-level errors are reported at.
OPTIMIZER_KEY = "optim_wrapper.optimizer"


class OptimizerConfigError(ConfigError):
    """A configuration mistake in ``optim_wrapper``, found at build time, before any training work.

    Args:
        message: What is wrong and how to fix it.
        key: The config path the mistake is at, e.g.
            ``'optim_wrapper.optimizer.type'``. It is prefixed to the message.
    """


class OptimizerUnavailableError(OptimizerConfigError):
    """A known optimizer that cannot run on this machine, with the reason."""
