"""The contract every registered optimizer keeps, checked over the whole catalogue.

Parametrised over every catalogue name at collection time, so a new source is
covered without editing this file. For each optimizer that runs here, built
with only ``lr`` (plus what ``NEEDS`` says it strictly needs):

1. ``STEPS`` steps reduce a convex quadratic;
2. its ``state_dict()``, loaded into a fresh instance over copied parameters,
   continues exactly as the original for ``MORE`` steps;
3. an lr lowered by a param scheduler (mmengine's ``ConstantLR``, factor 0.1)
   gives a smaller first update than the full lr — true for lr-free
   optimizers too, where lr multiplies the estimated step size.

A name that cannot run here must say why (``OPTIMIZERS.info(name).why_not``),
and ``OPTIMIZERS.build`` must refuse it with that reason; the test then skips
with the reason, so ``pytest -ra`` lists every one. Where an optimizer is
refused only because visdet's loop cannot drive it (a closure, a
``create_graph`` backward), the contract is run on the class itself with that
loop instead.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import torch
from mmengine.optim.scheduler import ConstantLR

from visdet.engine.optim.catalog.spec import Need
from visdet.engine.optim.errors import OptimizerUnavailableError
from visdet.engine.optim.registry import CatalogEntry, get_catalog
from visdet.registry import OPTIMIZERS

LR = 1e-2
STEPS, MORE = 5, 3
SCHEDULED_FACTOR = 0.1


@dataclass(frozen=True)
class Needs:
    """What one optimizer strictly needs beyond ``lr``, and why.

    Attributes:
        kwargs: Extra keyword arguments (or an lr that replaces ``LR``).
        matrix_only: Give it only the 2-D parameter.
        closure: Drive it with ``step(closure)``.
        create_graph: Backward with ``create_graph=True`` (Hessian-vector products).
        sparse: Give it sparse gradients.
        atol: Tolerance of the state-dict round trip (0: bit-identical).
        steps: Steps before the loss is checked (more for warm-up phases that do not move).
        has_lr: False for optimizers without an ``lr`` (a scheduler has nothing to set).
        lr_at_first_step: Check the scheduler on the first step instead of mid-run, for
            optimizers whose later steps depend on lr only through state.
        breaks: How it breaks the contract here (observed); the test then expects that
            failure and fails as soon as it keeps the contract, so the entry gets removed.
        why: The reason, for the reader.
    """

    kwargs: dict[str, Any] = field(default_factory=dict)
    matrix_only: bool = False
    closure: bool = False
    create_graph: bool = False
    sparse: bool = False
    atol: float = 0.0
    steps: int = STEPS
    has_lr: bool = True
    lr_at_first_step: bool = False
    breaks: str = ""
    why: str = ""


_LR_FREE = Needs({"lr": 1.0}, why="learning-rate-free: lr multiplies the estimated step size, 1.0 is the intended value")
_NO_RELATIVE = Needs({"relative_step": False}, why="with relative_step=True (its default) it ignores lr, or refuses one")
_MOMENTUM = Needs({"momentum": 0.9}, why="bitsandbytes' SGD/LARS refuse their own default momentum=0")
_WARMUP_STEPS = Needs(steps=10, why="moves nothing until its warm-up (rectification / gradient queue) is over")
TORCH, BNB, DS, DADAPT, PYOPT = "torch", "bitsandbytes", "deepspeed", "dadaptation", "pytorch-optimizer"

#: (package, class name) -> needs. Keyed by package too: torch's Adafactor is not transformers'.
NEEDS: dict[tuple[str, str], Needs] = {
    **{(pkg, name): _LR_FREE for pkg in (DADAPT, PYOPT)
       for name in ("DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan", "DAdaptLion")},
    ("prodigyopt", "Prodigy"): _LR_FREE,
    (PYOPT, "Prodigy"): _LR_FREE,
    ("transformers", "Adafactor"): _NO_RELATIVE,
    (PYOPT, "AdaFactor"): _NO_RELATIVE,
    ("galore-torch", "GaLoreAdafactor"): _NO_RELATIVE,
    ("apollo-torch", "GaLoreAdafactor"): _NO_RELATIVE,
    **{(BNB, name): _MOMENTUM for name in ("LARS", "LARS32bit", "LARS8bit", "PytorchLARS", "SGD", "SGD32bit", "SGD8bit")},
    (TORCH, "Muon"): Needs(matrix_only=True, why="takes 2-D parameters only (visdet's constructor routes the rest to a fallback)"),
    ("torch-optimi", "StableAdamW"): Needs({"triton": False}, why="optimi picks its Triton kernel, which needs CUDA, unless told not to"),
    (TORCH, "LBFGS"): Needs(closure=True, why="re-evaluates the loss through a closure"),
    (TORCH, "SparseAdam"): Needs(sparse=True, why="accepts sparse gradients only"),
    (PYOPT, "RAdam"): _WARMUP_STEPS,
    (PYOPT, "AdaShift"): Needs(steps=12, why="queues keep_num=10 gradients before its first update"),
    (PYOPT, "SRMM"): _WARMUP_STEPS,
    (PYOPT, "A2Grad"): Needs(has_lr=False, why="has no lr: its step size follows its own schedule"),
    (PYOPT, "AliG"): Needs(has_lr=False, why="has no lr: it computes a Polyak step size capped by max_lr"),
    (TORCH, "Rprop"): Needs(lr_at_first_step=True, why="lr is only the initial step size; later ones adapt in state"),
    (TORCH, "ASGD"): Needs(lr_at_first_step=True, why="steps with the eta it computed from lr the step before"),
    (PYOPT, "SaRA"): Needs(steps=10, breaks="moves nothing in 10 steps at lr=1e-2"),
    # Observed breaks of the contract, each expected (and re-checked) by the test:
    (DS, "DeepSpeedCPUAdam"): Needs(breaks="a state_dict round trip does not continue identically"),
    (PYOPT, "ApolloDQN"): Needs(breaks="a scheduler's lower lr does not change its update (it warms up from init_lr)"),
    (PYOPT, "BSAM"): Needs({"num_data": 8}, breaks="its step fails on plain parameter groups (needs a SAM-style loop)"),
    (PYOPT, "FTRL"): Needs(breaks="a lower lr mid-run gives a much larger step (lr enters its closed-form weight)"),
    (PYOPT, "Ranger"): Needs(steps=10, breaks="the quadratic's loss rises over its first 10 steps at lr=1e-2"),
    (PYOPT, "Ranger21"): Needs({"num_iterations": 100}, why="needs the run length for its built-in lr schedule"),
}


def _needs(entry: CatalogEntry) -> Needs:
    package = entry.source.package.replace("_", "-").lower()
    return NEEDS.get((package, entry.spec.class_name), Needs())


def _problem(matrix_only: bool) -> tuple[list[torch.nn.Parameter], list[torch.Tensor]]:
    """A small convex quadratic: parameters and the targets they should reach."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 8)] if matrix_only else [(8, 8), (8,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.5) for s in shapes]
    targets = [torch.randn(s, generator=gen) for s in shapes]
    return params, targets


def _loss(params: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    return sum(0.5 * ((p - t) ** 2).sum() for p, t in zip(params, targets))


def _step(optimizer: torch.optim.Optimizer, params, targets, needs: Needs, seed: int) -> None:
    """One training step the way ``needs`` says, with the RNG seeded (Kron samples)."""
    torch.manual_seed(seed)

    @torch.enable_grad()  # optimizers call closures inside their no_grad step()
    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _loss(params, targets)
        loss.backward(create_graph=needs.create_graph)
        if needs.sparse:
            for p in params:
                p.grad = p.grad.to_sparse()
        return loss

    if needs.closure:
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()


def _build(cls_or_name: Any, params, needs: Needs) -> torch.optim.Optimizer:
    cfg = {"type": cls_or_name, "params": params, "lr": LR, **needs.kwargs}
    optimizer = OPTIMIZERS.build(cfg) if isinstance(cls_or_name, str) else cls_or_name(params, **{
        k: v for k, v in cfg.items() if k not in ("type", "params")})
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # schedule-free optimizers step only in train mode
    return optimizer


def _run_contract(cls_or_name: Any, needs: Needs) -> None:
    # 1. A few steps reduce a convex loss.
    params, targets = _problem(needs.matrix_only)
    optimizer = _build(cls_or_name, params, needs)
    before = _loss(params, targets).item()
    for i in range(needs.steps):
        _step(optimizer, params, targets, needs, seed=i)
    after = _loss(params, targets).item()
    assert after < before, f"loss {before:.6g} -> {after:.6g} after {needs.steps} steps"

    # 2. state_dict() round trip: a fresh instance continues as the original.
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    fresh = _build(cls_or_name, copies, needs)
    fresh.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for i in range(needs.steps, needs.steps + MORE):
        _step(optimizer, params, targets, needs, seed=i)
        _step(fresh, copies, targets, needs, seed=i)
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
        branch = [torch.nn.Parameter(p.detach().clone()) for p in (params if warm else _problem(needs.matrix_only)[0])]
        start = [p.detach().clone() for p in branch]
        branch_optimizer = _build(cls_or_name, branch, needs)
        if warm is not None:
            branch_optimizer.load_state_dict(copy.deepcopy(warm))
        if scheduled:
            lr = branch_optimizer.param_groups[0]["lr"]
            ConstantLR(branch_optimizer, factor=SCHEDULED_FACTOR, by_epoch=False, begin=0, end=100)
            assert branch_optimizer.param_groups[0]["lr"] == pytest.approx(lr * SCHEDULED_FACTOR)
        _step(branch_optimizer, branch, targets, needs, seed=100)
        updates.append(torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(branch, start))).item())
    full, lowered = updates
    assert full > 0 and lowered < full, f"update with lr x{SCHEDULED_FACTOR}: {lowered:.3g} vs {full:.3g}"


#: Needs that only the training loop can meet: the contract runs on the class with that loop.
LOOP_NEEDS = (Need.CLOSURE, Need.CREATE_GRAPH)

NAMES = list(get_catalog().entries)


@pytest.mark.parametrize("name", NAMES)
def test_registered_optimizer_keeps_the_contract_or_says_why_not(name):
    entry = get_catalog().entries[name]
    needs = _needs(entry)
    provided = frozenset({"params", "lr", *needs.kwargs})
    reason = entry.why_not(provided)
    target: Any = name
    if reason:
        assert OPTIMIZERS.info(name).why_not == entry.why_not()  # the listing says the same
        with pytest.raises(OptimizerUnavailableError) as info:
            params, _ = _problem(needs.matrix_only)
            OPTIMIZERS.build({"type": name, "params": params, "lr": LR, **needs.kwargs})
        assert str(info.value).endswith(reason)
        loop_only = entry.present and not entry.import_error and entry.spec.needs and all(
            n in LOOP_NEEDS for n in entry.spec.needs)
        if not loop_only:
            pytest.skip(f"{name} cannot run here: {reason}")
        # Refused for visdet's loop, but the class keeps the contract with the loop it needs.
        target = entry.resolve()
        needs = replace(needs, closure=Need.CLOSURE in entry.spec.needs,
                        create_graph=Need.CREATE_GRAPH in entry.spec.needs)
    if needs.breaks:
        try:
            _run_contract(target, needs)
        except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
            pytest.xfail(f"{name} breaks the contract here: {needs.breaks} ({type(exc).__name__}: {str(exc)[:120]})")
        pytest.fail(f"{name} now keeps the contract: remove its `breaks` entry from NEEDS")
    _run_contract(target, needs)


def test_every_name_is_covered_and_needs_name_real_classes():
    """The parametrisation is the whole catalogue; NEEDS entries refer to catalogued classes."""
    catalogue = get_catalog().entries
    assert set(NAMES) == set(catalogue) and set(OPTIMIZERS.module_dict) <= set(NAMES) | _user_registered()
    classes = {e.spec.class_name for e in catalogue.values()}
    assert {name for _, name in NEEDS} & classes  # the table is keyed by real class names


def _user_registered() -> set[str]:
    catalogue = get_catalog().entries
    return {n for n in OPTIMIZERS.module_dict if n not in catalogue}
