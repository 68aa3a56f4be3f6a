"""Feature Pyramid Network neck with mmdet's defaults.

torchvision's ``FeaturePyramidNetwork`` takes an ``OrderedDict``, initialises
with Kaiming-uniform and upsamples differently from mmdet; mmdet configs
expect lists of maps, Xavier-uniform init, nearest upsampling to the exact
lower-level size and extra levels by stride-2 max-pool of the last output
(``add_extra_convs=False``). Without norm or activation mmcv's ``ConvModule``
reduces to ``nn.Conv2d``, which is used directly.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from visdet.models.errors import ModelConfigError
from visdet.registry import MODELS

_KEY = "model.neck"


@MODELS.register_module()
class FPN(BaseModule):
    """Top-down pyramid: 1x1 laterals, nearest upsample-and-add, 3x3 output convs.

    Args:
        in_channels: Channels of each backbone map used (finest first).
        out_channels: Channels of every output.
        num_outs: Output levels; those beyond the inputs are max-pooled from the last.
        start_level: First backbone map used.
        end_level: Last backbone map used (exclusive); -1 for all.
        add_extra_convs: Only False (max-pool extra levels) is supported.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_outs: int, start_level: int = 0,
                 end_level: int = -1, add_extra_convs: bool | str = False, relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False, conv_cfg: dict | None = None, norm_cfg: dict | None = None,
                 act_cfg: dict | None = None, upsample_cfg: dict | None = None,
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg)
        if add_extra_convs:
            raise ModelConfigError("only False (extra levels by max-pool) is supported", f"{_KEY}.add_extra_convs")
        if norm_cfg is not None or act_cfg is not None or conv_cfg is not None:
            raise ModelConfigError("norm_cfg/act_cfg/conv_cfg are not supported in FPN; leave them None", _KEY)
        self.in_channels = list(in_channels)
        end = len(self.in_channels) if end_level == -1 else end_level
        if not 0 <= start_level < end <= len(self.in_channels):
            raise ModelConfigError(f"start_level {start_level} / end_level {end_level} do not fit "
                                   f"{len(self.in_channels)} inputs", _KEY)
        if num_outs < end - start_level:
            raise ModelConfigError(f"must be >= the {end - start_level} levels used, got {num_outs}",
                                   f"{_KEY}.num_outs")
        self.start_level, self.end_level, self.num_outs = start_level, end, num_outs
        self.upsample_cfg = dict(upsample_cfg or dict(mode="nearest"))
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.in_channels[start_level:end])
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                       for _ in self.in_channels[start_level:end])
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.xavier_uniform_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN got {len(inputs)} feature maps but model.neck.in_channels lists "
                             f"{len(self.in_channels)}; match it to the backbone's out_indices")
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            if "scale_factor" in self.upsample_cfg:
                up = F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + up
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
