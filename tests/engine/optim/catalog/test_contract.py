"""The contract every catalogued optimizer keeps, checked over the whole catalogue.

Parametrised over every catalogue name at collection time, present here or
not, so a new source is covered without editing this file; what a class needs
beyond ``lr`` comes from the one table in ``contract_needs.py``. For each
optimizer that runs here, built by ``OPTIMIZERS.build`` with only ``lr`` (plus
what the table says it strictly needs):

1. it is the catalogued class, and ``STEPS`` steps reduce a convex quadratic
   (a matrix, a vector and a conv kernel) with finite losses, moving every
   parameter tensor;
2. its ``state_dict()``, loaded into a fresh instance over copied parameters,
   continues exactly as the original for ``MORE`` steps;
3. an lr lowered by a param scheduler (mmengine's ``ConstantLR``, factor 0.1)
   gives a smaller first update than the full lr — true for lr-free
   optimizers too, where lr multiplies the estimated step size;
4. where the catalogue gives a state size per parameter, two real steps on a
   512x512 weight (large enough for 8-bit state) allocate that much and move it.

A class the catalogue says needs CUDA is held to the same contract on the GPU
where there is one (its kernels refuse CPU tensors). A name that cannot run
here must say why (``OPTIMIZERS.info(name).why_not``), and
``OPTIMIZERS.build`` must refuse it with that reason; the test then skips
with the reason, so ``pytest -ra`` lists every one. Where an optimizer is
refused only because visdet's loop cannot drive it (a closure, a
``create_graph`` backward), the contract is run on the class itself with that
loop instead. The catalogue's naming rules (collisions, quiet absence, the
documented renames) close the file.
"""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import torch
from mmengine.optim.scheduler import ConstantLR

from contract_needs import NEEDS, Needs, needs_for, unknown_keys
from testutils import REPO, run_python
from visdet.engine.optim import Need, OptimizerUnavailableError, get_catalog, list_optimizers
from visdet.engine.optim.build.model_argument import build_with_model, takes_model, updates_in_backward
from visdet.engine.optim.build.muon_layout import flag_groups
from visdet.engine.optim.build.nested_optimizer import build_nested
from visdet.registry import OPTIMIZERS

LR = 1e-2
MORE = 3
SCHEDULED_FACTOR = 0.1
#: Needs that only the training loop can meet: the contract runs on the class with that loop.
LOOP_NEEDS = (Need.CLOSURE, Need.CREATE_GRAPH)

NAMES = list(get_catalog().entries)
STATE_NAMES = [n for n, e in get_catalog().entries.items() if e.spec.state_bytes is not None]

Loss = Callable[[list[torch.Tensor]], torch.Tensor]


def _device_for(name: str) -> str:
    """Where the contract runs ``name``: on the GPU for a CUDA-only class (it runs only where there is one,
    and its kernels refuse CPU tensors), else on the CPU."""
    return "cuda" if Need.CUDA in get_catalog().entries[name].spec.needs else "cpu"


def _problem(matrix_only: bool, device: str = "cpu") -> tuple[list[torch.nn.Parameter], Loss]:
    """A small convex quadratic on ``device``: parameters and their loss (the same numbers on any device)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 8)] if matrix_only else [(8, 8), (8,), (4, 2, 3, 3)]
    params = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.5).to(device)) for s in shapes]
    targets = [torch.randn(s, generator=gen).to(device) for s in shapes]
    return params, lambda ps: sum(0.5 * ((p - t) ** 2).sum() for p, t in zip(ps, targets))


def _step(optimizer: torch.optim.Optimizer, params, loss_fn: Loss, needs: Needs, seed: int) -> float:
    """One training step the way ``needs`` says, with the RNG seeded (Kron samples); the loss before it."""
    torch.manual_seed(seed)

    seen: list[float] = []

    @torch.enable_grad()  # optimizers call closures inside their no_grad step()
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(params)
        seen.append(loss.item())
        loss.backward(create_graph=needs.create_graph)
        if needs.sparse:
            for p in params:
                p.grad = p.grad.to_sparse()
        return loss

    if needs.closure:  # the closure driver's order (wrappers/drivers/closure.py): a first pass, then step(closure)
        closure()
        optimizer.step(closure)
    elif updates_in_backward(optimizer):  # LOMO: its update runs in its own backward (the fused_backward driver's)
        loss = loss_fn(params)
        seen.append(loss.item())
        optimizer.fused_backward(loss, optimizer.param_groups[0]["lr"])
    else:
        closure()
        optimizer.step()
    return seen[0]


class _Holder(torch.nn.Module):
    """A module over the test's parameters, for optimizers that take the model (named ``params.0``...)."""

    def __init__(self, params) -> None:
        super().__init__()
        self.params = torch.nn.ParameterList(params)


def _layout(target: Any) -> str:
    """The parameter layout the constructor builds for a registry name's class ('' for a plain list)."""
    return get_catalog().entries[target].spec.layout if isinstance(target, str) else ""


def _build(target: Any, params, needs: Needs, **kwargs: Any) -> torch.optim.Optimizer:
    cfg = {"lr": LR, **kwargs, **needs.kwargs}
    if needs.nested:  # a wrapper: the test's lr and keywords go to the optimizer it wraps
        ((keyword, inner),) = needs.nested.items()
        optimizer = build_nested(params, {"type": target, **needs.kwargs, keyword: {**inner, "lr": LR, **kwargs}},
                                 model=_Holder(params))  # taken only by wrappers that take the model (WSAM)
    elif takes_model(get_catalog().entries[target].resolve() if isinstance(target, str) else target):
        optimizer = build_with_model(target, _Holder(params), **cfg)  # LOMO, Adam-mini: the constructor's build
    elif _layout(target):  # the Muon family's use_muon groups, by the constructor's function (build/muon_layout.py)
        groups = flag_groups([{"params": [p for p in params if p.ndim >= 2]}],
                             [{"params": [p for p in params if p.ndim < 2]}], _layout(target))
        optimizer = OPTIMIZERS.build({"type": target, "params": groups, **cfg})
    else:
        optimizer = OPTIMIZERS.build({"type": target, "params": params, **cfg}) if isinstance(target, str) else target(
            params, **cfg)
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # schedule-free optimizers step only in train mode
    return optimizer


def _loop_only(entry) -> bool:
    """Refused only because visdet's loop cannot drive it: the class itself can be held to the contract."""
    return bool(entry.present and not entry.import_error and entry.spec.needs
                and all(n in LOOP_NEEDS for n in entry.spec.needs))


def _target(name: str, needs: Needs) -> tuple[Any, Needs]:
    """What to hold to the contract: the registry name, or the class with the loop it needs; else skip."""
    entry = get_catalog().entries[name]
    reason = entry.why_not(frozenset({"params", "lr", *needs.kwargs}))
    if not reason:  # met by visdet's loop: the second-order driver's backward(create_graph=True), the closure driver's
        return name, replace(needs, create_graph=needs.create_graph or Need.CREATE_GRAPH in entry.spec.needs,
                             closure=needs.closure or Need.CLOSURE in entry.spec.needs)
    if not _loop_only(entry):
        pytest.skip(f"{name} cannot run here: {reason}")
    return entry.resolve(), replace(needs, closure=Need.CLOSURE in entry.spec.needs,
                                    create_graph=Need.CREATE_GRAPH in entry.spec.needs)


def _stance(needs: Needs) -> contextlib.AbstractContextManager:
    """torch.compile off for ``needs.eager`` (torch's documented switch: compiled code runs eagerly)."""
    return torch.compiler.set_stance("force_eager") if needs.eager else contextlib.nullcontext()


def _expect(breaks: str, name: str, check: Callable[[], None]) -> None:
    """Run ``check``; where the table says it breaks, expect that and fail once it no longer does."""
    if not breaks:
        check()
        return
    try:
        check()
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
        pytest.xfail(f"{name} breaks the contract here: {breaks} ({type(exc).__name__}: {str(exc)[:120]})")
    pytest.fail(f"{name} now keeps the contract: remove its breaks entry from NEEDS")


def _run_contract(name: str, target: Any, needs: Needs) -> None:
    # 1. It is the catalogued class, and a few steps reduce a convex loss, moving every tensor.
    device = _device_for(name)
    params, loss_fn = _problem(needs.matrix_only, device)
    optimizer = _build(target, params, needs)
    if isinstance(target, str):
        spec = get_catalog().entries[name].spec
        assert isinstance(optimizer, get_catalog().entries[name].resolve())
        assert type(optimizer).__module__.split(".")[0] == spec.module.split(".")[0], type(optimizer).__module__
    start = [p.detach().clone() for p in params]
    before = loss_fn(params).item()
    losses = [_step(optimizer, params, loss_fn, needs, seed=i) for i in range(needs.steps)]
    after = loss_fn(params).item()
    assert all(math.isfinite(v) for v in losses), losses
    assert after < before, f"loss {before:.6g} -> {after:.6g} after {needs.steps} steps"
    moved = [not torch.equal(s, p) for s, p in zip(start, params)]
    assert any(moved) if needs.partial else all(moved), f"{moved.count(False)} of {len(moved)} tensors unchanged"

    # 2. state_dict() round trip: a fresh instance continues as the original.
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = _build(target, copies, needs)
    fresh.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for i in range(needs.steps, needs.steps + MORE):
        _step(optimizer, params, loss_fn, needs, seed=i)
        _step(fresh, copies, loss_fn, needs, seed=i)
    for original, loaded in zip(params, copies):
        if needs.atol:
            torch.testing.assert_close(loaded, original, atol=needs.atol, rtol=0)
        else:
            assert torch.equal(loaded, original), "a state_dict round trip changed the next steps"

    # 3. An lr lowered by a param scheduler gives a smaller update. Both copies start from the
    # state after the steps above (warm-up phases that ignore lr are over), loaded as in 2.
    if not needs.has_lr:  # nothing for a scheduler to set: say so rather than pretend
        assert all("lr" not in group for group in optimizer.param_groups)
        return
    warm = None if needs.lr_at_first_step else copy.deepcopy(optimizer.state_dict())
    updates = []
    for scheduled in (False, True):
        branch = [torch.nn.Parameter(p.detach().clone())
                  for p in (params if warm else _problem(needs.matrix_only, device)[0])]
        begin = [p.detach().clone() for p in branch]
        branch_optimizer = _build(target, branch, needs)
        if warm is not None:
            branch_optimizer.load_state_dict(copy.deepcopy(warm))
        if scheduled:
            lr = branch_optimizer.param_groups[0]["lr"]
            ConstantLR(branch_optimizer, factor=SCHEDULED_FACTOR, by_epoch=False, begin=0, end=100)
            assert branch_optimizer.param_groups[0]["lr"] == pytest.approx(lr * SCHEDULED_FACTOR)
        _step(branch_optimizer, branch, loss_fn, needs, seed=100)
        updates.append(torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(branch, begin))).item())
    full, lowered = updates
    assert full > 0 and lowered < full, f"update with lr x{SCHEDULED_FACTOR}: {lowered:.3g} vs {full:.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_catalogued_optimizer_keeps_the_contract_or_says_why_not(name):
    entry = get_catalog().entries[name]
    needs = needs_for(entry)
    reason = entry.why_not(frozenset({"params", "lr", *needs.kwargs}))
    if reason:  # the listing and the build give the same reason
        info = OPTIMIZERS.info(name)
        assert not info.runs_here and info.why_not == entry.why_not()
        with pytest.raises(OptimizerUnavailableError) as raised:
            _build(name, _problem(needs.matrix_only)[0], needs)
        assert str(raised.value) == f"optim_wrapper.optimizer.type: '{name}' cannot run here: {reason}"
    target, needs = _target(name, needs)
    with _stance(needs):
        _expect(needs.breaks, name, lambda: _run_contract(name, target, needs))


def _check_state_size(name: str, target: Any, needs: Needs) -> None:
    device = _device_for(name)
    weight = torch.nn.Parameter(torch.nn.Linear(512, 512, bias=False).weight.detach().clone().to(device))
    start = weight.detach().clone()
    optimizer = _build(target, [weight], needs, lr=1e-3, **needs.state_kwargs)
    inputs = torch.randn(4, 512).to(device)
    expected = get_catalog().entries[name].spec.state_bytes
    for seed in range(2):  # the figure holds after the first step and stays after the second
        _step(optimizer, [weight], lambda ps: (inputs @ ps[0].T).square().mean(), needs, seed=seed)
        tensors = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
        measured = sum(t.numel() * t.element_size() for t in tensors if t.numel() > 1) / weight.numel()
        assert expected == pytest.approx(measured, rel=0.02), (name, seed, measured)
    assert torch.isfinite(weight).all()
    if needs.still_steps < 2 and not needs.partial:
        assert not torch.equal(start, weight), f"{name} did not move a 512x512 weight in 2 steps"


@pytest.mark.parametrize("name", STATE_NAMES)
def test_catalogued_state_size_matches_real_steps(name):
    needs = needs_for(get_catalog().entries[name])
    if needs.state_unmeasured:
        pytest.skip(f"{name}: {needs.state_unmeasured}")
    target, needs = _target(name, needs)
    with _stance(needs):
        _expect(needs.breaks_state, name, lambda: _check_state_size(name, target, needs))


def test_every_name_is_covered_and_needs_name_real_classes():
    """The parametrisation is the whole catalogue; every NEEDS key is a catalogued (package, class)."""
    catalogue = get_catalog().entries
    assert set(NAMES) == set(catalogue) and set(OPTIMIZERS.module_dict) <= set(NAMES) | _user_registered()
    assert set(STATE_NAMES) == {n for n, e in catalogue.items() if e.spec.state_bytes is not None}
    assert not unknown_keys(NEEDS, catalogue), "NEEDS keys that name no catalogued class"
    assert all(needs.steps > needs.still_steps for needs in NEEDS.values())


def test_a_misspelt_needs_key_is_reported():
    """The key check can fail: one misspelt class or package among real keys is caught."""
    catalogue = get_catalog().entries
    table = {**NEEDS, ("torch", "AdamWW"): Needs(), ("transformers", "Muon"): Needs(),
             ("pytorch_optimizer", "SaRA"): Needs()}  # a real key, spelt with pip's other separator
    assert unknown_keys(table, catalogue) == {("torch", "AdamWW"), ("transformers", "Muon")}
    classes = {e.spec.class_name for e in catalogue.values()}
    assert {name for _, name in table} & classes  # the old check, which passed whatever the misspelling


def _user_registered() -> set[str]:
    catalogue = get_catalog().entries
    return {n for n in OPTIMIZERS.module_dict if n not in catalogue}


def test_what_a_build_needs_beyond_lr_is_in_the_notes():
    """A name either runs a plain lr-only step or its listing says what it needs."""
    for name, entry in get_catalog().entries.items():
        assert needs_for(entry).notes_say in entry.spec.notes, (name, entry.spec.notes)
    verdicts = {i.name: i for i in list_optimizers()}
    for name in ("Adafactor", "GaLoreAdafactor", "apollo_torch_GaLoreAdafactor", "StableAdamW", "Ranger21"):
        assert verdicts[name].runs_here and verdicts[name].notes, name
    for name in ("AdaHessian", "SophiaH"):  # driven by visdet's second-order driver (wrappers/drivers/second_order.py)
        assert verdicts[name].runs_here and "create_graph=True" in verdicts[name].notes, name
    # Driven by the closure driver (wrappers/drivers/closure.py); the listing still says what a step costs.
    for name, text in {"SAM": "two forward-backward passes", "AdamWScheduleFreeClosure": "closure",
                       "LBFGS": "closure"}.items():
        assert verdicts[name].runs_here and text in verdicts[name].notes + verdicts[name].description, name
    for name, text in {"SafeFP16Optimizer": "float16 weights",
                       "LoRARite": "LoRA adapter pairs (lora_A/lora_B)"}.items():
        assert not verdicts[name].runs_here and text in verdicts[name].why_not, (name, verdicts[name].why_not)
    for name in ("pytorch_optimizer_Muon", "AdaMuon", "NorMuon", "MuonClip", "AdaGO"):  # build/muon_layout.py
        assert verdicts[name].runs_here and "use_muon groups" in verdicts[name].notes, name


def test_a_wrapper_is_buildable_when_given_the_optimizer_it_wraps(small_net):
    inner = torch.optim.SGD(small_net.parameters(), lr=0.1)
    wrapper = OPTIMIZERS.build(dict(type="Lookahead", optimizer=inner, k=2))
    small_net(torch.randn(2, 3, 8, 8)).sum().backward()
    before = small_net.fc2.weight.detach().clone()
    wrapper.step()
    assert not torch.equal(before, small_net.fc2.weight)


def test_cpu_only_machine_marks_cuda_and_engine_optimizers_as_not_runnable():
    if torch.cuda.is_available():
        pytest.skip("CUDA-only verdicts: needs a machine without CUDA to check them")
    verdicts = {i.name: i for i in list_optimizers()}
    for name in ("FusedLamb", "OnebitAdam", "OnebitLamb", "ZeroOneAdam"):
        assert not verdicts[name].runs_here
    assert "CUDA" in verdicts["FusedLamb"].why_not
    assert "DeepSpeed engine" in verdicts["OnebitAdam"].why_not
    assert "torch.distributed" in verdicts["OnebitAdam"].why_not
    assert verdicts["DeepSpeedCPUAdam"].runs_here and verdicts["FusedAdam"].runs_here


# The catalogue's naming: fixed by the source rank, the same whatever is installed.

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
        from visdet.engine.optim import get_catalog, list_optimizers
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
