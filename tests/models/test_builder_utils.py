"""build_component: unknown types and wrong arguments name the config key."""
from __future__ import annotations

import pytest

from visdet.models import FPN, ModelConfigError
from visdet.models.builder_utils import build_component
from visdet.registry import MODELS, TASK_UTILS


def test_unknown_type_names_the_key_and_close_names():
    with pytest.raises(ModelConfigError) as info:
        build_component(dict(type="FPNN", in_channels=[8], out_channels=8, num_outs=1), MODELS, "model.neck")
    assert str(info.value).startswith("model.neck.type: unknown type 'FPNN'")
    assert "did you mean 'FPN'" in str(info.value)
    with pytest.raises(ModelConfigError, match=r"model\.train_cfg\.rpn\.assigner\.type.*'MaxIoUAssigner'"):
        build_component(dict(type="MaxIouAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5), TASK_UTILS,
                        "model.train_cfg.rpn.assigner")


def test_wrong_argument_names_the_key_and_missing_type_is_reported():
    with pytest.raises(ModelConfigError, match=r"^model\.neck: bad arguments for 'FPN'.*out_chanels"):
        build_component(dict(type="FPN", in_channels=[8], out_chanels=8, num_outs=1), MODELS, "model.neck")
    with pytest.raises(ModelConfigError, match=r"^model\.neck: has no 'type'"):
        build_component(dict(in_channels=[8]), MODELS, "model.neck")


def test_builds_registered_types_and_passes_objects_through():
    neck = build_component(dict(type="FPN", in_channels=[8], out_channels=8, num_outs=1), MODELS, "model.neck")
    assert isinstance(neck, FPN)
    assert build_component(neck, MODELS, "model.neck") is neck
