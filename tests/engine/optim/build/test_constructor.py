"""The visdet constructor inside mmengine's builder: default for visdet configs, Muon hybrid, ZeRO."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.optim.scheduler import CosineAnnealingLR
from mmengine.registry import DefaultScope
from torch import nn

from testutils import run_python
from visdet.engine.optim.build.constructor import OptimWrapperConstructor
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError
from visdet.engine.optim.hybrid.optimizer import HybridOptimizer


class ConvClassifier(nn.Module):
    """Stem conv, hidden convs and a hidden linear (Muon's), BN, biases and a head (the fallback's)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 64)
        self.fc_cls = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc_cls(torch.relu(self.fc(x.mean((2, 3)))))


def synthetic_batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes told apart by which colour channel is bright in which half."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        x[i, label % 3, :, : 8 if label < 2 else 16] += 1.5
    return x, y


def with_visdet_scope(fn):
    with DefaultScope.overwrite_default_scope("visdet"):
        return fn()


def test_mmengine_builder_uses_visdet_constructor_under_visdet_scope(small_net):
    cfg = dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05), paramwise_cfg=dict(norm_decay_mult=0.0))
    wrapper = with_visdet_scope(lambda: build_optim_wrapper(small_net, copy.deepcopy(cfg)))
    assert isinstance(wrapper, OptimWrapper)
    assert len(wrapper.optimizer.param_groups) == 2  # merged: decayed and not decayed
    assert wrapper.optimizer.defaults["fused"] is True
    # The config can still ask for mmengine's constructor, which makes a group per parameter.
    theirs = with_visdet_scope(
        lambda: build_optim_wrapper(
            small_net, {**copy.deepcopy(cfg), "constructor": "mmengine.DefaultOptimWrapperConstructor"}
        )
    )
    assert len(theirs.optimizer.param_groups) == len(list(small_net.parameters()))


def test_mmengine_builder_reports_config_errors_in_visdet_words(small_net):
    cfg = dict(optimizer=dict(type="AdamW", lr=1e-3), clip_grad=dict(max_nrom=1))
    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper.clip_grad: .*did you mean 'max_norm'"):
        with_visdet_scope(lambda: build_optim_wrapper(small_net, cfg))


_ASSERTING_PACKAGE = """import torch


class AssertsItsLr(torch.optim.SGD):
    def __init__(self, params, lr=1e-3):
        assert lr > 0.
        super().__init__(params, lr=lr)
"""


def test_an_optimizer_that_asserts_on_its_arguments_gives_a_config_error(small_net, tmp_path):
    """Some packages check arguments with a bare assert (lion-pytorch: ``assert lr > 0.``): no message at all."""
    import importlib.util

    from visdet.registry import OPTIMIZERS

    path = tmp_path / "asserting_package.py"  # a real module outside pytest's assertion rewriting
    path.write_text(_ASSERTING_PACKAGE)
    spec = importlib.util.spec_from_file_location("asserting_package", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    OPTIMIZERS.register_module(name="_AssertsItsLr", module=module.AssertsItsLr, force=True)
    try:
        cfg = dict(optimizer=dict(type="_AssertsItsLr", lr=0.0))
        with pytest.raises(OptimizerConfigError, match=r"optim_wrapper.optimizer: _AssertsItsLr refused its "
                                                       r"arguments: AssertionError at asserting_package.py:6: "
                                                       r"`assert lr > 0.`"):
            with_visdet_scope(lambda: build_optim_wrapper(small_net, cfg))
    finally:
        OPTIMIZERS._module_dict.pop("_AssertsItsLr", None)


def test_wrapper_keys_reach_the_wrapper(small_net):
    wrapper = OptimWrapperConstructor(
        dict(optimizer=dict(type="SGD", lr=0.1), clip_grad=dict(max_norm=1.0), accumulative_counts=2)
    )(small_net)
    assert wrapper._accumulative_counts == 2 and wrapper.clip_grad_kwargs["max_norm"] == 1.0


# --- Muon ----------------------------------------------------------------------

MUON = dict(
    type="Muon", lr=0.02, weight_decay=0.01, flatten_conv=True, fallback=dict(type="AdamW", lr=3e-3, weight_decay=0.01)
)


def train(model: nn.Module, wrapper: OptimWrapper, steps: int) -> list[float]:
    x, y = synthetic_batch()
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        wrapper.update_params(loss)
        losses.append(loss.item())
    return losses


def test_muon_hybrid_trains_a_conv_net_with_clipping():
    torch.manual_seed(0)
    model = ConvClassifier()
    wrapper = OptimWrapperConstructor(dict(optimizer=copy.deepcopy(MUON), clip_grad=dict(max_norm=5.0)))(model)
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, HybridOptimizer)
    muon, adamw = optimizer.optimizers["matrix"], optimizer.optimizers["fallback"]
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in muon.param_groups) == 3  # conv1, conv2 (flattened), fc
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = train(model, wrapper, 25)
    assert losses[-1] < 0.5 * losses[0], losses
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), f"{name} did not move"


def test_muon_without_fallback_gets_a_sensible_adamw():
    model = ConvClassifier()
    optimizer = OptimWrapperConstructor(dict(optimizer=dict(type="Muon", lr=0.02)))(model).optimizer
    adamw = optimizer.optimizers["fallback"]
    assert isinstance(adamw, torch.optim.AdamW)
    assert {g["lr"] for g in adamw.param_groups} == {1e-3}  # AdamW's default, not Muon's 0.02
    assert {g["weight_decay"] for g in adamw.param_groups} == {0.1}  # Muon's default weight decay
    # With updates scaled to AdamW's RMS, one lr serves both.
    matched = OptimWrapperConstructor(
        dict(optimizer=dict(type="Muon", lr=0.01, adjust_lr_fn="match_rms_adamw"))
    )(ConvClassifier()).optimizer
    assert {g["lr"] for g in matched.optimizers["fallback"].param_groups} == {0.01}
    # Conv kernels stay on the fallback unless flatten_conv=True.
    assert sum(len(g["params"]) for g in optimizer.optimizers["matrix"].param_groups) == 1


def test_plain_muon_cannot_take_a_detector_but_the_hybrid_can():
    with pytest.raises(ValueError):
        torch.optim.Muon(ConvClassifier().parameters())
    OptimWrapperConstructor(dict(optimizer=dict(type="Muon")))(ConvClassifier())


def test_paramwise_rules_apply_on_both_routes():
    model = ConvClassifier()
    optimizer = OptimWrapperConstructor(
        dict(optimizer=copy.deepcopy(MUON)), dict(norm_decay_mult=0.0, custom_keys={"conv2": dict(lr_mult=0.5)})
    )(model).optimizer
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in optimizer.optimizers["fallback"].param_groups for p in g["params"]}
    assert wd_of[id(model.bn.weight)] == 0.0 and wd_of[id(model.fc_cls.weight)] == 0.01
    assert lr_of[id(model.conv2.bias)] == pytest.approx(3e-3 * 0.5)  # fallback base lr x mult
    muon_lrs = sorted(g["lr"] for g in optimizer.optimizers["matrix"].param_groups)
    assert muon_lrs == pytest.approx([0.02 * 0.5, 0.02])  # conv2's kernel vs the others


def test_muon_hybrid_state_round_trips_through_the_wrapper():
    torch.manual_seed(0)
    model = ConvClassifier()
    cfg = dict(optimizer=copy.deepcopy(MUON))
    wrapper = OptimWrapperConstructor(copy.deepcopy(cfg))(model)
    train(model, wrapper, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": wrapper.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone = ConvClassifier()
    clone.load_state_dict(saved["model"])
    clone_wrapper = OptimWrapperConstructor(copy.deepcopy(cfg))(clone)
    clone_wrapper.load_state_dict(saved["optim"])
    train(model, wrapper, 3)
    train(clone, clone_wrapper, 3)
    for (name, a), b in zip(model.named_parameters(), clone.parameters()):
        assert torch.equal(a, b), name


def test_param_scheduler_moves_both_routes():
    model = ConvClassifier()
    wrapper = OptimWrapperConstructor(dict(optimizer=copy.deepcopy(MUON)))(model)
    scheduler = CosineAnnealingLR(wrapper, T_max=10, by_epoch=False)
    train(model, wrapper, 1)
    scheduler.step()
    hybrid = wrapper.optimizer
    assert hybrid.optimizers["matrix"].param_groups[0]["lr"] < 0.02
    assert hybrid.optimizers["fallback"].param_groups[0]["lr"] < 3e-3


def test_hybrid_config_errors():
    fallback_error = r"optim_wrapper.optimizer.fallback: AdamW got an unknown argument 'momentum'"
    with pytest.raises(OptimizerConfigError, match=fallback_error):
        OptimWrapperConstructor(dict(optimizer=dict(type="Muon", fallback=dict(type="AdamW", momentum=0.9))))
    flatten_error = r"optim_wrapper.optimizer.flatten_conv: flatten_conv must be True or False"
    with pytest.raises(OptimizerConfigError, match=flatten_error):
        OptimWrapperConstructor(dict(optimizer=dict(type="Muon", flatten_conv="yes")))
    with pytest.raises(OptimizerConfigError, match=r"Muon got an unknown argument 'betas'"):
        OptimWrapperConstructor(dict(optimizer=dict(type="Muon", betas=(0.9, 0.95))))
    # A matrix-only fallback failed inside torch ("Muon only supports 2D parameters") with no fix named.
    with pytest.raises(OptimizerConfigError, match=r"optim_wrapper.optimizer.fallback.type: Muon takes only matrices, "
                       r"so it cannot be the fallback.*fallback=dict\(type='AdamW'\)"):
        OptimWrapperConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3, fallback=dict(type="Muon"))))


@pytest.mark.parametrize("fallback_keys", [True, 6e-5, "fc_cls", {"fc_cls": 1}, ["fc_cls", 3]])
def test_fallback_keys_that_are_not_a_list_of_names(fallback_keys):
    """Found by the fuzzer: a bool or a number was iterated, giving a bare TypeError."""
    match = r"optim_wrapper.optimizer.fallback_keys: fallback_keys must be a list"
    with pytest.raises(OptimizerConfigError, match=match):
        OptimWrapperConstructor(dict(optimizer=dict(type="Lion", fallback_keys=fallback_keys)))


def test_a_fallback_splits_any_optimizer_by_shape():
    """The same mechanism for another optimizer: Adafactor on matrices, AdamW on the rest."""
    model = ConvClassifier()
    optimizer = OptimWrapperConstructor(
        dict(optimizer=dict(type="TorchAdafactor", lr=1e-2, fallback=dict(type="AdamW", lr=1e-3)))
    )(model).optimizer
    assert isinstance(optimizer.optimizers["matrix"], torch.optim.Adafactor)


# --- ZeRO ----------------------------------------------------------------------

def test_zero_needs_a_process_group():
    with pytest.raises(OptimizerUnavailableError, match="torch.distributed"):
        OptimWrapperConstructor(dict(optimizer=dict(type="ZeroRedundancyOptimizer", optimizer_type="AdamW")))


def test_zero_shards_any_registered_optimizer():
    """optimizer_type resolves through visdet's registry (mmengine only looks in torch.optim)."""
    result = run_python(
        """
        import os, tempfile, torch
        import torch.distributed as dist
        from visdet.engine.optim.build.constructor import OptimWrapperConstructor
        from visdet.engine.optim.errors import OptimizerConfigError
        dist.init_process_group('gloo', init_method='file://' + tempfile.mktemp(), rank=0, world_size=1)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        cfg = dict(optimizer=dict(type='ZeroRedundancyOptimizer', optimizer_type='Lion', lr=1e-3, weight_decay=0.1),
                   paramwise_cfg=dict(bias_decay_mult=0.0))
        wrapper = OptimWrapperConstructor(cfg)(model)
        zero = wrapper.optimizer
        print('local', type(zero.optim).__module__, type(zero.optim).__name__)
        print('groups', sorted(g['weight_decay'] for g in zero.param_groups))
        x, y = torch.randn(32, 8), torch.randn(32, 1)
        losses = []
        for _ in range(20):
            loss = torch.nn.functional.mse_loss(model(x), y)
            wrapper.update_params(loss)
            losses.append(loss.item())
        print('decreased', losses[-1] < losses[0])
        try:
            OptimWrapperConstructor(
                dict(optimizer=dict(type='ZeroRedundancyOptimizer', optimizer_type='AdamW', momentum=0.9))
            )
        except OptimizerConfigError as e:
            print('error', e)
        dist.destroy_process_group()
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "local bitsandbytes.optim.lion Lion" in out
    assert "groups [0.0, 0.1]" in out
    assert "decreased True" in out
    assert "AdamW got an unknown argument 'momentum'" in out


def test_update_params_makes_at_most_one_host_sync_per_step(monkeypatch):
    """No per-parameter .item(): clipping and the step stay on the device; only the logged grad norm syncs."""
    model = ConvClassifier()
    wrapper = OptimWrapperConstructor(
        dict(optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=1.0)),
        dict(norm_decay_mult=0.0),
    )(model)
    x, y = synthetic_batch(8)
    calls = []
    for name in ("item", "__float__", "tolist", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    loss = nn.functional.cross_entropy(model(x), y)
    calls.clear()
    wrapper.update_params(loss)
    assert len(calls) <= 1, calls


def test_importing_the_constructor_prints_nothing():
    result = run_python("import visdet.engine.optim.build.constructor, visdet.engine.optim.build.report")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "" and result.stderr == ""


def test_reloading_the_constructor_module_does_not_raise_already_registered():
    result = run_python(
        """
        import importlib
        import visdet.engine.optim.builders as builders
        import visdet.engine.optim.build.constructor as constructor
        importlib.reload(constructor)
        from mmengine.registry import DefaultScope
        from visdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
        with DefaultScope.overwrite_default_scope('visdet'):
            built = OPTIM_WRAPPER_CONSTRUCTORS.get('DefaultOptimWrapperConstructor')
            print(built is constructor.OptimWrapperConstructor)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
