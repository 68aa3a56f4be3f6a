"""``DatasetConfigError``: a dataset/evaluator config value that cannot work.

A ``visdet.errors.ConfigError`` (hence a ``ValueError``) carrying the dotted
config key it is about, e.g. ``dataset.data_root``; the key starts the
message so the user knows which line of the config to fix.
"""
from __future__ import annotations

from visdet.errors import ConfigError


class DatasetConfigError(ConfigError):
    """Raised before training when a data or evaluator config key points at nothing usable."""
