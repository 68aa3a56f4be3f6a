"""Error type and did-you-mean suggestions."""
from __future__ import annotations

from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError

from visdet.utils.suggestions import did_you_mean, suggestion_text


def test_error_names_the_key_and_is_a_value_error():
    error = OptimizerUnavailableError("'X' cannot run here: needs a CUDA device", "optim_wrapper.optimizer.type")
    assert isinstance(error, OptimizerConfigError) and isinstance(error, ValueError)
    assert str(error) == "optim_wrapper.optimizer.type: 'X' cannot run here: needs a CUDA device"
    assert error.key == "optim_wrapper.optimizer.type"


def test_suggestions_are_case_insensitive_and_catch_prefixes():
    names = ["AdamW", "Adam", "AdamW8bit", "SGD", "DAdaptAdam"]
    assert did_you_mean("adamw", names)[0] == "AdamW"
    assert "AdamW8bit" in did_you_mean("adamw8", names)
    assert did_you_mean("zzz", names) == []
    assert suggestion_text("sgd", names) == "; did you mean 'SGD'?"
    assert suggestion_text("zzz", names) == ""
