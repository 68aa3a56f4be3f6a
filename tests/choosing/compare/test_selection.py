"""--optimizers: names and aliases through the catalogue, duplicates refused, unrunnable ones kept with why."""
from __future__ import annotations

import pytest

from visdet.choosing.compare.selection import parse_optimizers
from visdet.engine.optim.catalog.catalogue import get_catalog
from visdet.errors import ConfigError


def test_an_alias_that_means_the_same_optimizer_is_a_duplicate():
    with pytest.raises(ConfigError, match="'SGD' and 'sgd' are both SGD") as caught:
        parse_optimizers("SGD,sgd")
    assert caught.value.key == "--optimizers"


def test_an_alias_with_its_own_settings_is_another_candidate():
    plain, fused = parse_optimizers("AdamW,adamw_torch_fused")  # the alias sets fused=True
    assert (plain.canonical, fused.canonical) == ("AdamW", "AdamW")


def test_an_optimizer_that_cannot_run_here_is_kept_with_the_catalogues_reason():
    (choice,) = parse_optimizers("ZeroRedundancyOptimizer")
    assert choice.why_not == get_catalog().lookup("ZeroRedundancyOptimizer").why_not()
    assert choice.why_not.startswith("needs torch.distributed")


@pytest.mark.parametrize("text, says", [("", "give at least one optimizer"), ("AdamW,,SGD", "an empty name"),
                                        ("Adamw2", "did you mean")])
def test_a_bad_list_names_the_flag(text, says):
    with pytest.raises(ConfigError, match=says) as caught:
        parse_optimizers(text)
    assert caught.value.key == "--optimizers"
