"""The optimizer families of issue 6: each runnable one steps, names follow the rank, absence is quiet."""
from __future__ import annotations

import math

import pytest
import torch

from testutils import run_python, train_steps
from visdet.engine.optim import OptimizerUnavailableError, list_optimizers
from visdet.engine.optim.registry import get_catalog
from visdet.registry import OPTIMIZERS

NEW = {"transformers", "lion-pytorch", "prodigyopt", "schedulefree", "torch-optimi", "galore-torch",
       "apollo-torch", "pytorch-optimizer"}
INFOS = [i for i in list_optimizers() if i.source in NEW]
RUNNABLE = [i for i in INFOS if i.runs_here]
NOT_RUNNABLE = [i for i in INFOS if not i.runs_here]

_ADAFACTOR = {"relative_step": False, "scale_parameter": False, "warmup_init": False}
# What the notes say a plain lr-only build needs on this CPU machine.
EXTRA_KWARGS = {
    "Adafactor": _ADAFACTOR, "GaLoreAdafactor": _ADAFACTOR, "apollo_torch_GaLoreAdafactor": _ADAFACTOR,
    "StableAdamW": {"triton": False}, "Ranger21": {"num_iterations": 100},
}
LR_FREE = {"Prodigy", "pytorch_optimizer_Prodigy", "pytorch_optimizer_DAdaptAdam", "pytorch_optimizer_DAdaptAdan",
           "pytorch_optimizer_DAdaptLion", "pytorch_optimizer_DAdaptSGD", "pytorch_optimizer_DAdaptAdaGrad"}
# Optimizers that hold some tensors still at first, as their notes say (warm-up, lagged history,
# D-Adaptation's tiny first step estimate, masks): they must still move some parameter.
PARTIAL = {"AdaShift", "pytorch_optimizer_RAdam", "ScheduleFreeRAdam", "RAdamScheduleFree", "pytorch_optimizer_DAdaptSGD",
           "pytorch_optimizer_DAdaptAdaGrad", "pytorch_optimizer_DAdaptLion", "SaRA", "Prodigy",
           "pytorch_optimizer_Prodigy"}


@pytest.mark.parametrize("info", RUNNABLE, ids=lambda i: i.name)
def test_runnable_new_optimizer_takes_a_real_step_on_cpu(info, small_net):
    before = [p.detach().clone() for p in small_net.parameters()]
    lr = 1.0 if info.name in LR_FREE else 1e-2
    optimizer = OPTIMIZERS.build(dict(type=info.name, params=small_net.parameters(), lr=lr,
                                      **EXTRA_KWARGS.get(info.name, {})))
    assert f"{type(optimizer).__module__}.{type(optimizer).__name__}".startswith(info.import_path.split(".")[0])
    losses = train_steps(small_net, optimizer, steps=12 if info.name in PARTIAL else 3)
    assert all(math.isfinite(v) for v in losses), losses
    moved = [not torch.equal(b, p) for b, p in zip(before, small_net.parameters()) if b.norm() > 0]
    if info.name in PARTIAL:
        assert any(moved), f"{info.name} moved no parameter in 12 steps"
    else:
        assert all(moved), f"{info.name} left {moved.count(False)} non-zero parameter tensors unchanged"


@pytest.mark.parametrize("info", NOT_RUNNABLE, ids=lambda i: i.name)
def test_new_optimizer_that_cannot_run_here_fails_at_build_with_the_reason(info, small_net):
    assert info.why_not
    with pytest.raises(OptimizerUnavailableError) as raised:
        OPTIMIZERS.build(dict(type=info.name, params=small_net.parameters(), lr=1e-3))
    assert str(raised.value) == f"optim_wrapper.optimizer.type: '{info.name}' cannot run here: {info.why_not}"


def test_every_new_optimizer_that_cannot_step_plainly_says_why():
    """A name either runs a plain lr-only step (above) or its listing says what it needs."""
    lr_only_fails = {"Adafactor", "GaLoreAdafactor", "apollo_torch_GaLoreAdafactor", "StableAdamW", "Ranger21"}
    verdicts = {i.name: i for i in INFOS}
    for name in lr_only_fails:
        assert verdicts[name].runs_here and verdicts[name].notes, name
    assert "relative_step=False" in verdicts["Adafactor"].notes
    assert "triton=False" in verdicts["StableAdamW"].notes
    assert "num_iterations" in verdicts["Ranger21"].notes
    for name, text in {"AdaHessian": "create_graph=True", "SophiaH": "create_graph=True", "SAM": "closure",
                       "AdamWScheduleFreeClosure": "closure", "Lookahead": "wraps another optimizer",
                       "LOMO": "model", "pytorch_optimizer_Muon": "parameter-group layout"}.items():
        assert not verdicts[name].runs_here and text in verdicts[name].why_not, (name, verdicts[name].why_not)


def test_a_wrapper_is_buildable_when_given_the_optimizer_it_wraps(small_net):
    inner = torch.optim.SGD(small_net.parameters(), lr=0.1)
    wrapper = OPTIMIZERS.build(dict(type="Lookahead", optimizer=inner, k=2))
    small_net(torch.randn(2, 3, 8, 8)).sum().backward()
    before = small_net.fc2.weight.detach().clone()
    wrapper.step()
    assert not torch.equal(before, small_net.fc2.weight)


@pytest.mark.parametrize("name, source, import_path", [
    ("Adafactor", "transformers", "transformers.optimization.Adafactor"),
    ("TorchAdafactor", "torch", "torch.optim.Adafactor"),
    ("Lion", "bitsandbytes", "bitsandbytes.optim.Lion"),
    ("lion_pytorch_Lion", "lion-pytorch", "lion_pytorch.Lion"),
    ("optimi_Lion", "torch-optimi", "optimi.Lion"),
    ("pytorch_optimizer_Lion", "pytorch-optimizer", "pytorch_optimizer.optimizer.Lion"),
    ("optimi_AdamW", "torch-optimi", "optimi.AdamW"),
    ("Prodigy", "prodigyopt", "prodigyopt.Prodigy"),
    ("pytorch_optimizer_Prodigy", "pytorch-optimizer", "pytorch_optimizer.optimizer.Prodigy"),
    ("StableAdamW", "torch-optimi", "optimi.StableAdamW"),
    ("pytorch_optimizer_StableAdamW", "pytorch-optimizer", "pytorch_optimizer.optimizer.StableAdamW"),
    ("Adan", "torch-optimi", "optimi.Adan"),
    ("pytorch_optimizer_Adan", "pytorch-optimizer", "pytorch_optimizer.optimizer.Adan"),
    ("LARS", "bitsandbytes", "bitsandbytes.optim.LARS"),
    ("pytorch_optimizer_LARS", "pytorch-optimizer", "pytorch_optimizer.optimizer.LARS"),
    ("pytorch_optimizer_DAdaptAdam", "pytorch-optimizer", "pytorch_optimizer.optimizer.DAdaptAdam"),
    ("GaLoreAdamW", "galore-torch", "galore_torch.GaLoreAdamW"),
    ("apollo_torch_GaLoreAdamW", "apollo-torch", "apollo_torch.GaLoreAdamW"),
    ("APOLLOAdamW", "apollo-torch", "apollo_torch.APOLLOAdamW"),
    ("SOAP", "pytorch-optimizer", "pytorch_optimizer.optimizer.SOAP"),
    ("AdamWScheduleFree", "schedulefree", "schedulefree.AdamWScheduleFree"),
])
def test_collisions_resolve_by_the_source_rank(name, source, import_path):
    spec = get_catalog().lookup(name).spec
    assert (spec.source, spec.import_path) == (source, import_path)


def test_torch_classes_reexported_by_pytorch_optimizer_are_not_registered_again():
    assert "pytorch_optimizer_Adam" not in get_catalog().entries
    assert "pytorch_optimizer_SGD" not in get_catalog().entries


def test_missing_packages_keep_visdet_quiet_list_their_names_and_rename_nothing():
    code = """
        import sys
        for name in {missing}:
            sys.modules[name] = None  # as if not installed
        import torch, visdet
        from visdet.registry import OPTIMIZERS
        from visdet.engine.optim import list_optimizers
        from visdet.engine.optim.registry import get_catalog
        names = {{n: (e.spec.import_path, e.present) for n, e in get_catalog().entries.items()}}
        for info in list_optimizers():
            if not info.runs_here and "not installed" in info.why_not:
                print("MISSING", info.name, "|", info.why_not)
        print("NAMES", sorted(names.items()))
        backends = ["optimi", "pytorch_optimizer", "lion_pytorch", "schedulefree", "transformers", "galore_torch",
                    "apollo_torch", "prodigyopt"]
        print("MODULES", sorted(m for m in backends if sys.modules.get(m) is not None))
    """
    missing = ["optimi", "pytorch_optimizer", "lion_pytorch", "schedulefree", "transformers", "galore_torch"]
    absent = run_python(code.format(missing=missing))
    present = run_python(code.format(missing=[]))
    assert absent.returncode == 0 and present.returncode == 0, absent.stderr + present.stderr
    assert absent.stderr == "" and present.stderr == ""  # import visdet printed nothing
    out = absent.stdout
    assert "MISSING SOAP | pytorch-optimizer is not installed (pip install pytorch-optimizer)" in out
    assert "MISSING StableAdamW | torch-optimi is not installed (pip install torch-optimi)" in out
    assert "MISSING lion_pytorch_Lion | lion-pytorch is not installed (pip install lion-pytorch)" in out
    assert "MISSING AdamWScheduleFree | schedulefree is not installed (pip install schedulefree)" in out
    assert "MISSING Adafactor | transformers is not installed (pip install transformers)" in out

    def names(stdout: str) -> dict:
        line = next(x for x in stdout.splitlines() if x.startswith("NAMES "))
        return {n: path for n, (path, _) in eval(line[len("NAMES "):])}

    # The same names mean the same classes whatever is installed.
    absent_names, present_names = names(absent.stdout), names(present.stdout)
    assert absent_names == {n: p for n, p in present_names.items() if n in absent_names}
    assert absent_names["pytorch_optimizer_Adan"] == "pytorch_optimizer.optimizer.Adan"
    assert absent_names["Adan"] == "optimi.Adan"
    assert "MODULES []" in present.stdout  # import visdet and the listing import none of the installed backends


def test_docs_list_every_renamed_name():
    """docs/optimizers.md's table of renamed names is the catalogue's, row for row."""
    from testutils import REPO

    text = (REPO / "docs" / "optimizers.md").read_text()
    table = text.split("<!-- renamed:start -->")[1].split("<!-- renamed:end -->")[0]
    documented = {}
    for line in table.strip().splitlines()[2:]:
        name, path, holder = (cell.strip().strip("`") for cell in line.strip("|").split("|"))
        documented[name] = (path, holder)
    catalog = get_catalog()
    expected = {
        name: (e.spec.import_path, catalog.entries[e.spec.class_name].spec.source)
        for name, e in catalog.entries.items() if name != e.spec.class_name
    }
    assert documented == expected


# Optimizer-state size: the catalogue's figure against what two real steps allocate.
STATE_CASES = {
    "lion_pytorch_Lion": {}, "Prodigy": {"lr": 1.0}, "AdamWScheduleFree": {}, "AdamWScheduleFreeReference": {},
    "SGDScheduleFree": {}, "SGDScheduleFreeReference": {}, "RAdamScheduleFree": {}, "optimi_AdamW": {},
    "Adan": {}, "optimi_SGD": {"momentum": 0.9}, "Ranger": {}, "StableAdamW": {"triton": False}, "ADOPT": {},
    "MARS": {}, "Lamb": {}, "pytorch_optimizer_AdEMAMix": {}, "pytorch_optimizer_LARS": {"momentum": 0.9},
}


@pytest.mark.parametrize("name", sorted(STATE_CASES))
def test_catalogued_state_bytes_match_real_steps(name):
    model = torch.nn.Linear(512, 512, bias=False)
    optimizer = OPTIMIZERS.build(dict(type=name, params=model.parameters(), **{"lr": 1e-3, **STATE_CASES[name]}))
    if hasattr(optimizer, "train"):
        optimizer.train()
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(4, 512)).square().mean().backward()
        optimizer.step()
    tensors = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    measured = sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1) / model.weight.numel()
    (info,) = [i for i in list_optimizers(name) if i.name == name]  # the pattern ignores case: Lamb, LAMB
    assert info.state_bytes_per_param == pytest.approx(measured, rel=0.02), (name, measured)
