"""``DatasetConfigError``: a dataset/evaluator config value that cannot work.

A ``visdet.errors.ConfigError`` (hence a ``ValueError``) carrying the dotted
config key it is about, e.g. ``dataset.data_root``; the key starts the
message so the user knows which line of the config to fix.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from visdet.errors import ConfigError


class DatasetConfigError(ConfigError):
    """Raised before training when a data or evaluator config key points at nothing usable."""


@contextmanager
def dataset_config_section(section: str) -> Iterator[None]:
    """Prefix ``section`` (``'train_dataloader'``) to the key of a ``DatasetConfigError`` raised inside.

    A dataset only knows its own keys (``dataset.filter_cfg.min_size``); the
    Runner knows which dataloader it is building, so it wraps the build and
    the user reads the full config path (``train_dataloader.dataset.filter_cfg.min_size``).
    """
    try:
        yield
    except DatasetConfigError as err:
        if err.key is None or not err.key.startswith('dataset'):
            raise
        raise type(err)(err.reason, key=f'{section}.{err.key}') from err
