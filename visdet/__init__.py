"""visdet: MMEngine-style object detection built around a pluggable optimizer subsystem.

Importing visdet is quiet and cheap: optional optimizer backends are
imported only when an optimizer of theirs is first used.
"""
from visdet.registry import OPTIMIZERS  # noqa: F401  fills the registry

__version__ = "0.1.0"
