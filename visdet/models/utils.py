"""Small helpers shared by the heads: config access, image metainfo, NMS config."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visdet.models.errors import ModelConfigError


def cfg_get(cfg: Mapping | None, name: str, key: str, default: Any = ...) -> Any:
    """``cfg[name]``, or ``default``; a missing required entry names ``key.name``."""
    if cfg is not None and name in cfg:
        return cfg[name]
    if default is ...:
        raise ModelConfigError(f"'{name}' is required here", f"{key}.{name}")
    return default


def nms_iou_threshold(nms_cfg: Mapping | None, key: str) -> float:
    """The IoU threshold of an mmdet ``nms`` config (only plain NMS is supported)."""
    if nms_cfg is None:
        raise ModelConfigError("is required, e.g. dict(type='nms', iou_threshold=0.7)", f"{key}.nms")
    nms_type = nms_cfg.get("type", "nms")
    if nms_type != "nms":
        raise ModelConfigError(f"NMS type {nms_type!r} is not supported; use 'nms'", f"{key}.nms.type")
    if "iou_threshold" not in nms_cfg:
        raise ModelConfigError("needs 'iou_threshold', e.g. dict(type='nms', iou_threshold=0.7)", f"{key}.nms")
    return float(nms_cfg["iou_threshold"])
