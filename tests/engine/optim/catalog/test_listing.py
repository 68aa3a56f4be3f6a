"""list_optimizers(): one record per known optimizer, filters, and agreement with the registry."""
from __future__ import annotations

import json

import torch

from visdet.engine.optim import list_optimizers
from visdet.engine.optim.catalog.listing import format_table
from visdet.registry import OPTIMIZERS


def test_every_registered_name_is_listed_and_runnable_ones_are_registered():
    listed = {i.name: i for i in list_optimizers()}
    assert set(OPTIMIZERS.module_dict) <= set(listed)
    for info in listed.values():
        if info.runs_here:
            assert info.name in OPTIMIZERS.module_dict


def test_records_carry_the_metadata_tools_need():
    adamw = list_optimizers("AdamW")[0]
    assert adamw.source == "torch" and adamw.version == torch.__version__.split("+")[0]
    assert adamw.runs_here and adamw.why_not == ""
    assert adamw.state_bytes_per_param == 8 and adamw.devices == ("cpu", "cuda")
    assert adamw.import_path == "torch.optim.AdamW" and adamw.description
    eight_bit = list_optimizers("AdamW8bit")[0]
    assert eight_bit.source == "bitsandbytes" and 2 <= eight_bit.state_bytes_per_param < 2.1
    assert "slow on CPU" in eight_bit.notes
    assert list_optimizers("TorchAdafactor")[0].state.startswith("sub-linear")
    json.dumps([i.as_dict() for i in list_optimizers()])  # serialisable


def test_pattern_is_a_case_insensitive_glob():
    names = {i.name for i in list_optimizers("*ADAM*")}
    assert {"Adam", "AdamW", "Adam8bit", "DAdaptAdam", "FusedAdam", "DeepSpeedCPUAdam"} <= names
    assert "SGD" not in names
    assert list_optimizers("no-such-*") == []


def test_available_keeps_only_what_runs_here():
    available = list_optimizers(available=True)
    assert available and all(i.runs_here for i in available)
    if not torch.cuda.is_available():
        assert "FusedLamb" not in {i.name for i in available}


def test_verify_imports_backends_and_keeps_verdicts():
    verified = {i.name: i.runs_here for i in list_optimizers("DAdapt*", verify=True)}
    assert verified and all(verified.values())


def test_table_has_the_columns_and_full_reasons():
    table = format_table(list_optimizers())
    header = table.splitlines()[0].split()
    assert header[:4] == ["name", "source", "version", "runs"]
    assert "why not" in table.splitlines()[0] and "state B/param" in table.splitlines()[0]
    if not torch.cuda.is_available():
        assert "Why not, in full:" in table and "OnebitAdam: needs a CUDA device" in table
