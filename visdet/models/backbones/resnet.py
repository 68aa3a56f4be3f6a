"""ResNet backbone returning multi-scale features, as mmdet's ``ResNet`` configures it.

The residual blocks and stem are torchvision's (``BasicBlock``, ``Bottleneck``
with the stride on the 3x3 conv, i.e. mmdet's ``style='pytorch'``; built with
``weights=None``, nothing downloaded), so the arithmetic is the well-tested
reference implementation. What torchvision lacks and detection needs is added
here: several output stages (``out_indices``), freezing the stem and first
stages (``frozen_stages``), keeping BatchNorm statistics fixed in training
(``norm_eval``), and norm layers from an mmcv ``norm_cfg`` (BN, GN, SyncBN).
torchvision's init (Kaiming normal, fan-out, for convs; 1/0 for norms) is
already mmdet's default.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import resnet as tv_resnet

from visdet.utils.quiet_import import quiet_import
from visdet.models.errors import ModelConfigError
from visdet.registry import MODELS

_KEY = "model.backbone"
ARCH_SETTINGS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (tv_resnet.BasicBlock, (2, 2, 2, 2)),
    34: (tv_resnet.BasicBlock, (3, 4, 6, 3)),
    50: (tv_resnet.Bottleneck, (3, 4, 6, 3)),
    101: (tv_resnet.Bottleneck, (3, 4, 23, 3)),
    152: (tv_resnet.Bottleneck, (3, 8, 36, 3)),
}


def norm_layer_factory(norm_cfg: dict):
    """A ``norm_layer(num_features)`` callable for torchvision, built by mmcv's ``build_norm_layer``."""
    # mmcv.cnn imports mmengine.runner, which prints DeepSpeed's accelerator notice; keep imports quiet.
    build_norm_layer = quiet_import("mmcv.cnn").build_norm_layer
    try:
        build_norm_layer(norm_cfg, 64)  # the narrowest ResNet layer, so GN group counts are checked too
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise ModelConfigError(f"cannot build norm layer from {norm_cfg}: {err}; e.g. dict(type='BN'), "
                               "dict(type='GN', num_groups=32) or dict(type='SyncBN')", f"{_KEY}.norm_cfg") from err

    def make(num_features: int) -> nn.Module:
        return build_norm_layer(norm_cfg, num_features)[1]

    return make


@MODELS.register_module()
class ResNet(BaseModule):
    """ResNet-18/34/50/101/152 returning the feature maps of the stages in ``out_indices``.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: Input image channels.
        num_stages: Residual stages built (1-4).
        out_indices: Stages (0-based) whose outputs are returned.
        frozen_stages: -1 freezes nothing, 0 the stem, k the stem and stages 1..k.
        norm_cfg: mmcv norm config for every norm layer.
        norm_eval: Keep norm layers in eval mode (fixed statistics) during training.
        style: Only 'pytorch' (stride on the 3x3 conv) is supported.
        zero_init_residual: Zero the last norm of each block.
        init_cfg: mmengine init config, e.g. a ``Pretrained`` checkpoint.
    """

    def __init__(self, depth: int, in_channels: int = 3, num_stages: int = 4,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_cfg: dict | None = None, norm_eval: bool = True, style: str = "pytorch",
                 zero_init_residual: bool = False, init_cfg: dict | list | None = None,
                 pretrained: str | None = None) -> None:
        super().__init__(init_cfg)
        if depth not in ARCH_SETTINGS:
            raise ModelConfigError(f"unsupported depth {depth!r}; valid values are "
                                   f"{', '.join(map(str, ARCH_SETTINGS))}", f"{_KEY}.depth")
        if style != "pytorch":
            raise ModelConfigError(f"style {style!r} is not supported; use 'pytorch' (stride on the 3x3 conv)",
                                   f"{_KEY}.style")
        if not 1 <= num_stages <= 4:
            raise ModelConfigError(f"must be 1-4, got {num_stages}", f"{_KEY}.num_stages")
        bad = [i for i in out_indices if not 0 <= i < num_stages]
        if bad or not out_indices:
            raise ModelConfigError(f"indices must be in [0, {num_stages}) and non-empty, got {tuple(out_indices)}",
                                   f"{_KEY}.out_indices")
        if not -1 <= frozen_stages <= num_stages:
            raise ModelConfigError(f"must be in [-1, {num_stages}], got {frozen_stages}", f"{_KEY}.frozen_stages")
        if pretrained is not None:
            raise ModelConfigError("is deprecated; use init_cfg=dict(type='Pretrained', checkpoint=...)",
                                   f"{_KEY}.pretrained")
        block, layers = ARCH_SETTINGS[depth]
        norm_cfg = dict(norm_cfg or dict(type="BN", requires_grad=True))
        net = tv_resnet.ResNet(block, list(layers), norm_layer=norm_layer_factory(norm_cfg),
                               zero_init_residual=zero_init_residual)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.res_layers = [f"layer{i + 1}" for i in range(num_stages)]
        for name in self.res_layers:
            self.add_module(name, getattr(net, name))
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        expansion = block.expansion
        self.out_channels = [64 * 2 ** i * expansion for i in range(num_stages)]
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        """Stop gradients through the stem and the first ``frozen_stages`` stages."""
        frozen: list[nn.Module] = []
        if self.frozen_stages >= 0:
            frozen += [self.conv1, self.bn1]
        frozen += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def get_layer_depth(self, param_name: str, prefix: str = "",
                        decay_type: str = "layer_wise") -> tuple[int, int]:
        """The depth of a parameter for layer-wise lr decay: ``(layer_id, max_layer_id)``, mmpretrain's convention.

        The stem (``conv1``, ``bn1``) is layer 0; ``'layer_wise'`` gives each
        residual block the next id (ResNet-18: blocks 1..8), ``'stage_wise'``
        each stage (1..num_stages). Anything after the backbone (a name without
        ``prefix``: neck, heads) is ``max_layer_id - 1``, the deepest, whose lr
        is not decayed.
        """
        stage_wise = decay_type == "stage_wise"
        blocks = [len(getattr(self, name)) for name in self.res_layers]
        # the first id of each stage: its index (stage-wise) or 1 + the blocks before it (layer-wise)
        first = {name: i + 1 if stage_wise else 1 + sum(blocks[:i]) for i, name in enumerate(self.res_layers)}
        max_layer_id = (len(blocks) if stage_wise else sum(blocks)) + 2
        parts = param_name[len(prefix):].split(".") if param_name.startswith(prefix) else [""]
        if parts[0] in ("conv1", "bn1"):
            return 0, max_layer_id
        if parts[0] in first:
            return first[parts[0]] + (0 if stage_wise else int(parts[1])), max_layer_id
        return max_layer_id - 1, max_layer_id

    def train(self, mode: bool = True) -> "ResNet":
        """Train mode, keeping frozen stages and (with ``norm_eval``) norm layers in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
