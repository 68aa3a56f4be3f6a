"""The base of every visdet configuration error.

Each part of visdet raises its own subclass (optimizer, model, data set), so
``tools/train.py`` can catch them all with one ``except ConfigError`` and show
the message alone, without a traceback: the message is the whole story.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration mistake found at build time, before any training work.

    Args:
        message: What is wrong and what would be right.
        key: The config path of the mistake (``'model.backbone.depth'``);
            prefixed to the message.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        self.reason = message
        super().__init__(f"{key}: {message}" if key else message)


class CheckpointError(Exception):
    """A checkpoint file that is missing, truncated, corrupt or unsafe to load; the message names it."""
