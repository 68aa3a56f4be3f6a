"""Backbones, necks, heads and detectors (registered in MODELS and TASK_UTILS).

Every submodule that registers something is imported here, because the
registries import ``visdet.models`` on first lookup to fill themselves.
"""
import visdet.utils.quiet_mmengine  # noqa: F401  (before mmengine.optim)

from visdet.models.backbones import *  # noqa: F401,F403
from visdet.models.data_preprocessors import *  # noqa: F401,F403
from visdet.models.dense_heads import *  # noqa: F401,F403
from visdet.models.detectors import *  # noqa: F401,F403
from visdet.models.ema import ExpMomentumEMA
from visdet.models.errors import ModelConfigError
from visdet.models.losses import *  # noqa: F401,F403
from visdet.models.necks import *  # noqa: F401,F403
from visdet.models.roi_heads import *  # noqa: F401,F403
from visdet.models.task_modules import *  # noqa: F401,F403

__all__ = [
    "AnchorGenerator", "CrossEntropyLoss", "DeltaXYWHBBoxCoder", "DetDataPreprocessor", "FPN", "FasterRCNN",
    "L1Loss", "MaxIoUAssigner", "ModelConfigError", "RPNHead", "RandomSampler", "ResNet", "Shared2FCBBoxHead",
    "SingleRoIExtractor", "SmoothL1Loss", "StandardRoIHead", "TwoStageDetector",
    "ExpMomentumEMA",
]
