"""OptimizerSpec, the frozen record of one optimizer: its import path, its state size as text."""
from __future__ import annotations

import dataclasses

import pytest

from visdet.engine.optim import OptimizerSpec, get_catalog


def _spec(**fields) -> OptimizerSpec:
    return OptimizerSpec(**{"name": "Fancy", "class_name": "FancyOpt", "module": "fancy.optim", "source": "fancy",
                            **fields})


def test_import_path_is_module_dot_class_name():
    assert _spec().import_path == "fancy.optim.FancyOpt"


def test_catalogued_import_paths_name_the_class_in_its_module():
    entries = get_catalog().entries
    assert entries["AdamW"].spec.import_path == "torch.optim.AdamW"
    assert entries["TorchAdafactor"].spec.import_path == "torch.optim.Adafactor"  # the name differs, the class not
    for entry in entries.values():
        assert entry.spec.import_path == f"{entry.spec.module}.{entry.spec.class_name}"


@pytest.mark.parametrize("state_bytes, state_note, text", [
    (8, "", "8"),
    (8.0, "", "8"),  # :g drops the trailing .0
    (2.03125, "", "2.03125"),
    (4, "with momentum", "4 (with momentum)"),
    (0, "", "0"),  # stateless is a number, not unknown
    (None, "sub-linear", "sub-linear"),
    (None, "", "?"),
])
def test_state_text_forms(state_bytes, state_note, text):
    assert _spec(state_bytes=state_bytes, state_note=state_note).state_text() == text


def test_spec_is_frozen_and_replace_makes_a_new_one():
    spec = _spec(state_bytes=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.state_bytes = 4  # type: ignore[misc]
    changed = dataclasses.replace(spec, aliases=("fancy",))
    assert changed.aliases == ("fancy",) and spec.aliases == ()
    assert changed != spec and hash(changed) != hash(spec)  # frozen records hash by value


def test_defaults_run_on_cpu_and_cuda_and_need_nothing():
    spec = _spec()
    assert spec.devices == ("cpu", "cuda") and spec.needs == () and spec.state_text() == "?"
