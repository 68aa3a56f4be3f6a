"""``optim_wrapper.paramwise_cfg``: misspelt keys, bad multipliers and decay rules without a decay are config errors."""
from __future__ import annotations

import pytest
from optim_cfg_helpers import ADAMW, expect

from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.config.paramwise import DECAY, DECAY_MULTS, LR, PARAMWISE_KEYS, RULES, RULES_BY_SETTING
from visdet.engine.optim.errors import OptimizerConfigError

CUSTOM = "optim_wrapper.paramwise_cfg.custom_keys"


@pytest.mark.parametrize(
    "paramwise_cfg, key, match",
    [
        (dict(norm_decay_mul=0.0), "optim_wrapper.paramwise_cfg",
         r"unknown key 'norm_decay_mul'; did you mean 'norm_decay_mult'"),
        (dict(bias_lr_mult=-1.0), "optim_wrapper.paramwise_cfg.bias_lr_mult", r"bias_lr_mult must be >= 0"),
        (dict(flat_decay_mult="0"), "optim_wrapper.paramwise_cfg.flat_decay_mult", r"must be a number"),
        (dict(bypass_duplicate="yes"), "optim_wrapper.paramwise_cfg", r"bypass_duplicate must be True or False"),
        (dict(custom_keys=["backbone"]), CUSTOM, r"must be a dict of name"),
        (dict(custom_keys={"backbone": 0.1}), f"{CUSTOM}['backbone']", r"must be a dict like"),
        (dict(custom_keys={"backbone": dict(lr_mul=0.1)}), f"{CUSTOM}['backbone']",
         r"unknown key 'lr_mul'; did you mean 'lr_mult'"),
        (dict(custom_keys={"backbone": dict(lr="0.1")}), f"{CUSTOM}['backbone'].lr", r"lr must be a number"),
        (dict(custom_keys={"backbone": dict(decay_mult=-1)}), f"{CUSTOM}['backbone'].decay_mult",
         r"decay_mult must be >= 0"),
        (dict(custom_keys={"head": dict(betas=(0.9, 2.0))}), f"{CUSTOM}['head'].betas", r"betas\[1\] must be in"),
    ],
)
def test_bad_paramwise_cfg(paramwise_cfg, key, match):
    err = expect(match, ADAMW, paramwise_cfg)
    assert err.key == key


@pytest.mark.parametrize(
    "paramwise_cfg",
    [dict(norm_decay_mult=0.0), dict(flat_decay_mult=0.0), dict(custom_keys={"head": dict(decay_mult=0.0)})],
)
def test_decay_multipliers_without_weight_decay(paramwise_cfg):
    expect(r"multiplies the weight decay, but optim_wrapper.optimizer sets no weight_decay \(its default is 0.01\)",
           dict(type="AdamW", lr=1e-4), paramwise_cfg)


def test_paramwise_cfg_that_is_not_a_dict():
    for bad in ([1], "norm_decay_mult=0"):
        with pytest.raises(OptimizerConfigError, match="optim_wrapper.paramwise_cfg: must be a dict"):
            OptimWrapperConstructor(dict(optimizer=ADAMW), bad)


def test_the_rule_table_is_one_entry_per_key_with_one_precedence_per_setting():
    keys = [rule.key for rule in RULES]
    assert len(keys) == len(set(keys)) and set(keys) <= set(PARAMWISE_KEYS)
    assert {rule.setting for rule in RULES} == {LR, DECAY}
    for setting, rules in RULES_BY_SETTING.items():
        precedences = [rule.precedence for rule in rules]
        assert precedences == sorted(set(precedences)), setting  # no ties: the winner is always defined
    assert DECAY_MULTS == tuple(rule.key for rule in RULES if rule.setting == DECAY)
    assert all(rule.applies_to for rule in RULES)
