"""The exception raised for model configuration mistakes.

Messages are written for the person who wrote the config: they name the config
path (``'model.backbone.depth'``), what was wrong and what would be right.
It is a :class:`visdet.errors.ConfigError`, so the tools report it without a traceback.
"""
from __future__ import annotations

from visdet.errors import ConfigError


class ModelConfigError(ConfigError):
    """A mistake in the ``model`` part of a config, found at build time.

    Args:
        message: What is wrong and how to fix it.
        key: The config path of the mistake, prefixed to the message.
    """
