"""Backbones, necks, heads and detectors (registered in MODELS and TASK_UTILS).

Every submodule that registers something is imported here, because the
registries import ``visdet.models`` on first lookup to fill themselves.
"""
from visdet.engine.optim.quiet import quiet_import

# mmengine.model imports mmengine.optim, which imports bitsandbytes and DeepSpeed;
# they print at import (a kernels notice, "Setting accelerator to CPU"). Import it
# first with that output sent to the debug log.
quiet_import("mmengine.optim")

from visdet.models.backbones import *  # noqa: F401,F403
from visdet.models.data_preprocessors import *  # noqa: F401,F403
from visdet.models.dense_heads import *  # noqa: F401,F403
from visdet.models.detectors import *  # noqa: F401,F403
from visdet.models.errors import ModelConfigError
from visdet.models.losses import *  # noqa: F401,F403
from visdet.models.necks import *  # noqa: F401,F403
from visdet.models.roi_heads import *  # noqa: F401,F403
from visdet.models.task_modules import *  # noqa: F401,F403

__all__ = [
    "AnchorGenerator", "CrossEntropyLoss", "DeltaXYWHBBoxCoder", "DetDataPreprocessor", "FPN", "FasterRCNN",
    "L1Loss", "MaxIoUAssigner", "ModelConfigError", "RPNHead", "RandomSampler", "ResNet", "Shared2FCBBoxHead",
    "SingleRoIExtractor", "SmoothL1Loss", "StandardRoIHead", "TwoStageDetector",
]
