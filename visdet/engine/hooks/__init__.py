"""Training hooks visdet adds to mmengine's (registered in visdet's HOOKS)."""
import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)
from visdet.engine.hooks.checkpoint_hook import CheckpointHook
from visdet.engine.hooks.curve_plot_hook import CurvePlotHook
from visdet.engine.hooks.ema_hook import EMAHook
from visdet.engine.hooks.memory_log_hook import MemoryLogHook
from visdet.engine.hooks.plain_checkpoint_hook import PlainCheckpointHook
from visdet.engine.hooks.rng_state_hook import RNGStateHook
from visdet.engine.hooks.run_record_hook import RunRecordHook
from visdet.engine.hooks.schedule_free import ScheduleFreeHook
from visdet.engine.hooks.visualization_hook import DetVisualizationHook
from visdet.engine.hooks.zero_consolidate_hook import ZeroConsolidateHook

__all__ = ["CheckpointHook", "CurvePlotHook", "EMAHook", "MemoryLogHook", "PlainCheckpointHook", "RNGStateHook",
           "RunRecordHook", "ScheduleFreeHook", "DetVisualizationHook", "ZeroConsolidateHook"]
