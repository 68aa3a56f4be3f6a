"""accepted_keywords: what a callable takes by keyword, following **kwargs through source and MRO."""
from __future__ import annotations

import inspect

import torch

from visdet.utils.signatures import Keywords, accepted_keywords


def test_a_function_signature_skips_its_first_argument_on_request():
    keywords = accepted_keywords(torch.nn.utils.clip_grad_norm_)
    assert "parameters" not in keywords and "max_norm" in keywords.required
    assert keywords.defaults["norm_type"] == 2.0 and not keywords.open
    assert "parameters" in accepted_keywords(torch.nn.utils.clip_grad_norm_, skip_first=False).names


def test_a_class_drops_params_and_keeps_signature_order_and_defaults():
    keywords = accepted_keywords(torch.optim.SGD)
    assert keywords.names[0] == "lr" and "params" not in keywords
    assert keywords.defaults["momentum"] == 0 and keywords.required == ()


def test_real_kwargs_class_from_deepspeed_is_followed():
    """DeepSpeed's ZenFlowCPUAdam takes (*args, **kwargs) and forwards them to DeepSpeedCPUAdam."""
    from visdet.registry import OPTIMIZERS

    keywords = accepted_keywords(OPTIMIZERS.get("ZenFlowCPUAdam"))
    assert {"overlap_step", "lr", "betas", "adamw_mode", "fp32_optimizer_states"} <= set(keywords.names)
    assert not keywords.open


class _Base:
    def __init__(self, optimizer, base_only=1):
        self.optimizer = optimizer


class _Mixin:
    def __init__(self, *args, mixin_only=2, **kwargs):
        super().__init__(*args, **kwargs)  # reaches _Base only through the built class's MRO


class _Built(_Mixin, _Base):
    pass


def test_super_in_a_mixin_follows_the_built_class_mro():
    """mmengine's LinearLR is such a mixin class; its ``begin``/``end`` come from the base."""
    keywords = accepted_keywords(_Built)
    assert {"mixin_only", "base_only"} <= set(keywords.names) and not keywords.open


def test_kwargs_whose_source_cannot_be_read_make_the_set_open(monkeypatch):
    class Hidden(torch.optim.SGD):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    keywords = accepted_keywords(Hidden)
    assert keywords.open and "Hidden.__init__ takes **kwargs and its source cannot be read" in keywords.open_reason


def test_keywords_answer_in():
    keywords = Keywords(names=("lr", "eps"))
    assert "lr" in keywords and "betas" not in keywords and not keywords.open
