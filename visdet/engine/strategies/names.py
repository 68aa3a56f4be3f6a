"""The names visdet's strategy modules share, and their one error: the leaf they all import.

Kept apart from the checks (:mod:`.checks`) and the strategies that use them
(:mod:`.deepspeed`, :mod:`.fsdp`) so that neither has to import the other.
"""
from __future__ import annotations

from visdet.errors import ConfigError

FLEXIBLE_RUNNER = "FlexibleRunner"
DEEPSPEED, FSDP = "DeepSpeedStrategy", "FSDPStrategy"
#: Strategies mmengine 0.10 ships; visdet replaces the first two with fixed subclasses.
KNOWN_STRATEGIES = (DEEPSPEED, FSDP, "DDPStrategy", "SingleDeviceStrategy", "ColossalAIStrategy")
DEEPSPEED_WRAPPER = "DeepSpeedOptimWrapper"
#: The model wrapper FSDPStrategy wraps with (mmengine's name).
FSDP_WRAPPER = "MMFullyShardedDataParallel"


class StrategyConfigError(ConfigError):
    """A mistake in ``runner_type``/``strategy`` or in what the strategy needs from ``optim_wrapper``."""
