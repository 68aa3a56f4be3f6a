"""``paramwise_cfg`` layer-wise lr decay: its keys, their check, and MMDetection's spelling of them.

timm's ``layer_decay`` (a rate in (0, 1]) scales the lr of a parameter at
depth ``layer_id`` of ``max_layer_id`` by ``rate ** (max_layer_id - 1 - layer_id)``:
the stem (id 0) the most, the neck and heads (id ``max_layer_id - 1``) not at
all. visdet spells it in ``paramwise_cfg``::

    paramwise_cfg=dict(layer_decay=0.75, layer_decay_type='stage_wise')

MMDetection's ``LearningRateDecayOptimizerConstructor`` reads ``decay_rate``,
``decay_type`` and ``num_layers`` instead; :func:`from_mmdet_keys` translates
them (the constructor of that name calls it). The depth of each parameter is
the backbone's ``get_layer_depth`` (mmpretrain's convention; see
``build/layer_depth.py``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from visdet.engine.optim.config.arguments import check_number, describe
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.utils.suggestions import suggestion_text

RATE, TYPE, NUM_LAYERS = "layer_decay", "layer_decay_type", "layer_decay_num_layers"
#: The paramwise_cfg keys of layer decay (visdet's spelling).
LAYER_DECAY_KEYS = (RATE, TYPE, NUM_LAYERS)
DECAY_TYPES = ("layer_wise", "stage_wise")
#: MMDetection's LearningRateDecayOptimizerConstructor keys -> visdet's.
MMDET_KEYS = {"decay_rate": RATE, "decay_type": TYPE, "num_layers": NUM_LAYERS}


@dataclass(frozen=True)
class LayerDecay:
    """A checked layer-decay rule.

    Attributes:
        rate: The factor per layer, in (0, 1]; 1 decays nothing.
        decay_type: ``'layer_wise'`` (a layer per residual block) or ``'stage_wise'`` (a layer per stage).
        num_layers: The layers between the stem and the heads that the config
            expects (MMDetection's ``num_layers``); None to take the backbone's.
        key: The config path of ``paramwise_cfg``, for messages.
    """

    rate: float
    decay_type: str = "layer_wise"
    num_layers: int | None = None
    key: str = "optim_wrapper.paramwise_cfg"

    def scale(self, layer_id: int, max_layer_id: int) -> float:
        """The lr factor of depth ``layer_id``: ``rate ** (max_layer_id - 1 - layer_id)``."""
        return float(self.rate ** (max_layer_id - 1 - layer_id))


def parse_layer_decay(paramwise_cfg: Mapping[str, Any] | None, key: str = "optim_wrapper.paramwise_cfg"
                      ) -> LayerDecay | None:
    """The layer-decay rule of ``paramwise_cfg``, checked; None when it sets none.

    Raises:
        OptimizerConfigError: a rate outside (0, 1], an unknown decay type, a
            ``num_layers`` that is not a positive integer, or a type/num_layers without a rate.
    """
    if not paramwise_cfg:
        return None
    if RATE not in paramwise_cfg:
        extra = [k for k in (TYPE, NUM_LAYERS) if k in paramwise_cfg]
        if extra:
            raise OptimizerConfigError(f"{', '.join(extra)} is set but {RATE} (the decay rate) is not; "
                                       f"add e.g. {RATE}=0.75", f"{key}.{RATE}")
        return None
    rate = paramwise_cfg[RATE]
    check_number(rate, RATE, f"{key}.{RATE}")
    if not 0.0 < rate <= 1.0:
        raise OptimizerConfigError(f"must be in (0, 1] (the lr factor per layer; 1 decays nothing), got {rate:g}",
                                   f"{key}.{RATE}")
    decay_type = paramwise_cfg.get(TYPE, "layer_wise")
    if decay_type not in DECAY_TYPES:
        raise OptimizerConfigError(
            f"must be one of {', '.join(map(repr, DECAY_TYPES))}, got {describe(decay_type)}"
            f"{suggestion_text(str(decay_type), DECAY_TYPES)}", f"{key}.{TYPE}")
    num_layers = paramwise_cfg.get(NUM_LAYERS)
    if num_layers is not None and (isinstance(num_layers, bool) or not isinstance(num_layers, int)
                                   or num_layers < 1):
        raise OptimizerConfigError(f"must be a positive integer (the layers between stem and heads) or None, "
                                   f"got {describe(num_layers)}", f"{key}.{NUM_LAYERS}")
    return LayerDecay(float(rate), decay_type, num_layers, key)


def from_mmdet_keys(paramwise_cfg: Mapping[str, Any] | None, key: str = "optim_wrapper.paramwise_cfg"
                    ) -> dict[str, Any]:
    """MMDetection's ``decay_rate`` / ``decay_type`` / ``num_layers`` rewritten as visdet's keys.

    MMDetection's constructor needs ``decay_rate``; a config that also spells
    visdet's key for the same setting is ambiguous and refused.
    """
    cfg = dict(paramwise_cfg or {})
    for mmdet_key, ours in MMDET_KEYS.items():
        if mmdet_key in cfg:
            if ours in cfg:
                raise OptimizerConfigError(f"sets both {mmdet_key} (MMDetection's spelling) and {ours}; keep one",
                                           key)
            cfg[ours] = cfg.pop(mmdet_key)
    if RATE not in cfg:
        raise OptimizerConfigError(
            "LearningRateDecayOptimizerConstructor needs decay_rate (e.g. paramwise_cfg=dict(decay_rate=0.75, "
            "decay_type='layer_wise', num_layers=8))", f"{key}.decay_rate")
    return cfg
