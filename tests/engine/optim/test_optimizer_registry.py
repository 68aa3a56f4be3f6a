"""Filling OPTIMIZERS: names from every source, naming rule, laziness, idempotence, failures."""
from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
import torch
from mmengine.registry import Registry

from testutils import run_python
from visdet.engine.optim.errors import OptimizerConfigError
from visdet.engine.optim.registry import (
    LazyOptimizerClass,
    OptimizerCatalog,
    OptimizerRegistry,
    get_catalog,
    register_all_optimizers,
)
from visdet.engine.optim.catalog.source import Source
from visdet.engine.optim.catalog.sources import default_sources
from visdet.engine.optim.catalog.sources.deepspeed_ops import SOURCE as DEEPSPEED
from visdet.registry import OPTIMIZERS

TORCH_NAMES = {"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "ASGD", "Rprop",
               "NAdam", "RAdam", "SparseAdam", "LBFGS", "Muon", "TorchAdafactor", "ZeroRedundancyOptimizer"}
BNB_NAMES = {"Adam8bit", "AdamW8bit", "PagedAdamW", "Lion8bit", "LAMB", "LARS", "AdEMAMix", "Lion",
             "bnb_Adam", "bnb_AdamW", "bnb_SGD", "bnb_Adagrad", "bnb_RMSprop"}
DEEPSPEED_NAMES = {"FusedAdam", "DeepSpeedCPUAdam", "FusedLamb", "OnebitAdam", "OnebitLamb", "ZeroOneAdam"}
DADAPT_NAMES = {"DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan", "DAdaptLion"}


def _real_optimizer_classes(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {
        name for name, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer
    }


@pytest.mark.parametrize("expected", [TORCH_NAMES, BNB_NAMES, DEEPSPEED_NAMES, DADAPT_NAMES],
                         ids=["torch", "bitsandbytes", "deepspeed", "dadaptation"])
def test_names_from_each_source_are_registered(expected):
    missing = expected - set(OPTIMIZERS.module_dict)
    assert not missing


def test_every_torch_optimizer_is_registered_and_adafactor_is_renamed():
    exported = _real_optimizer_classes("torch.optim")
    for name in exported:
        registered = "TorchAdafactor" if name == "Adafactor" else name
        assert OPTIMIZERS.get(registered) is getattr(torch.optim, name)
    # The plain name is transformers' Adafactor, never torch's.
    assert get_catalog().lookup("Adafactor").spec.import_path == "transformers.optimization.Adafactor"


def _fields(source: Source) -> dict:
    """A source's settings, to build a variant of it."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(source)}


def _real_exported_classes(source, module_name: str) -> set[str]:
    """Optimizer classes a module exports (``__all__`` when it has one) that its package defines."""
    module = importlib.import_module(module_name)
    # Private names are never registered, even when a package lists one in __all__ (torchao's _AdamW).
    names = [n for n in (getattr(module, "__all__", None) or dir(module)) if not n.startswith("_")]
    return {
        name for name in names
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, torch.optim.Optimizer)
        and obj.__module__.split(".")[0] == source.top_level and (source.only is None or name in source.only)
    }


@pytest.mark.parametrize("source", default_sources()[1:], ids=lambda s: s.package)
def test_static_discovery_matches_a_real_import(source):
    """The ast scan must find exactly the classes a real import exposes (re-exports of torch's are torch's)."""
    discovered = {(module, name) for name, module in source.discover().items()}
    real = {(module, name) for module in source.export_modules for name in _real_exported_classes(source, module)}
    assert discovered == real
    assert discovered  # every source's package is installed in CI


def test_bitsandbytes_collisions_get_the_prefix_and_others_do_not():
    import bitsandbytes.optim as bnb_optim

    for name in _real_optimizer_classes("bitsandbytes.optim"):
        cls = getattr(bnb_optim, name)
        if hasattr(torch.optim, name) and issubclass(getattr(torch.optim, name), torch.optim.Optimizer):
            assert OPTIMIZERS.get(f"bnb_{name}") is cls
            assert OPTIMIZERS.get(name) is getattr(torch.optim, name)
        else:
            assert OPTIMIZERS.get(name) is cls, name
    # Lion has no torch namesake: the plain name means bitsandbytes' Lion.
    assert OPTIMIZERS.get("Lion") is bnb_optim.Lion


def test_names_do_not_depend_on_import_order():
    code = """
        import sys
        if sys.argv[-1] == "backends-first":
            import deepspeed, bitsandbytes, dadaptation
        from visdet.registry import OPTIMIZERS
        print(sorted(OPTIMIZERS.module_dict))
    """
    plain = run_python(code.replace("sys.argv[-1]", "'plain'"))
    first = run_python(code.replace("sys.argv[-1]", "'backends-first'"))
    assert plain.returncode == 0 and first.returncode == 0, plain.stderr + first.stderr
    # ``import deepspeed`` by the user prints its own notice; compare the names line.
    assert plain.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]


def test_a_newer_torch_adding_a_colliding_class_renames_deterministically(monkeypatch):
    class Lion(torch.optim.Optimizer):  # as if a future torch shipped one
        pass

    monkeypatch.setattr(torch.optim, "Lion", Lion, raising=False)
    catalog = OptimizerCatalog(default_sources())
    assert catalog.entries["Lion"].source.package == "torch"
    assert catalog.entries["bnb_Lion"].spec.import_path == "bitsandbytes.optim.Lion"
    # Filling the live registry with the new catalogue must not raise.
    registry = OptimizerRegistry("optimizer-test")
    register_all_optimizers(registry, catalog)
    register_all_optimizers(registry, catalog)
    assert registry.get("Lion") is Lion


def test_filling_twice_keeps_names_and_a_users_own_class():
    registry = OptimizerRegistry("optimizer-test")

    @registry.register_module(name="Adam8bit")
    class MyAdam8bit(torch.optim.SGD):
        pass

    first = register_all_optimizers(registry)
    second = register_all_optimizers(registry)
    assert first == second
    assert registry.get("Adam8bit") is MyAdam8bit  # ours never overwrites a user's class

    @registry.register_module(name="Lion", force=True)  # replacing one of ours after the fill
    class MyLion(torch.optim.SGD):
        pass

    register_all_optimizers(registry)
    assert registry.get("Lion") is MyLion
    with pytest.raises(KeyError, match="already registered"):  # mmengine's rule without force
        registry.register_module(name="AdamW", module=MyLion)


def test_classes_are_lazy_until_first_use_and_then_real():
    result = run_python(
        """
        import sys
        from visdet.registry import OPTIMIZERS
        raw = OPTIMIZERS.module_dict.raw("AdamW8bit")
        assert type(raw).__name__ == "LazyOptimizerClass", raw
        assert "bitsandbytes" not in sys.modules
        import torch
        cls = OPTIMIZERS.get("AdamW8bit")
        import bitsandbytes
        assert cls is bitsandbytes.optim.AdamW8bit
        assert OPTIMIZERS.module_dict["AdamW8bit"] is cls
        assert "AdamW8bit" in OPTIMIZERS and "NoSuchOptimizer" not in OPTIMIZERS
        opt = OPTIMIZERS.build(dict(type="AdamW8bit", params=torch.nn.Linear(4, 4).parameters(), lr=1e-3))
        assert isinstance(opt, bitsandbytes.optim.AdamW8bit)
        """
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["DeepSpeedCPUAdam", "AdamW8bit", "DAdaptAdam"])
def test_first_use_of_a_backend_prints_nothing(name):
    result = run_python(
        f"""
        from visdet.registry import OPTIMIZERS
        cls = OPTIMIZERS.get("{name}")
        assert cls.__name__ == "{name}", cls
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_mmengine_default_constructor_builds_visdet_names_under_the_visdet_scope(small_net):
    """A config with default_scope='visdet' goes through mmengine's own builder."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("visdet"):
        wrapper = build_optim_wrapper(small_net, dict(optimizer=dict(type="DeepSpeedCPUAdam", lr=1e-3)))
    assert type(wrapper.optimizer).__name__ == "DeepSpeedCPUAdam"  # built with params renamed
    small_net(torch.randn(2, 3, 8, 8)).sum().backward()
    before = small_net.fc2.weight.detach().clone()
    wrapper.step()
    assert not torch.equal(before, small_net.fc2.weight)


def test_a_missing_package_keeps_visdet_working_and_says_how_to_install():
    result = run_python(
        """
        import sys
        sys.modules["bitsandbytes"] = None  # as if not installed
        import torch, visdet
        from visdet.registry import OPTIMIZERS
        from visdet.engine.optim import list_optimizers, OptimizerUnavailableError
        assert "Adam8bit" not in OPTIMIZERS.module_dict and "AdamW" in OPTIMIZERS.module_dict
        (info,) = list_optimizers("Adam8bit")
        assert not info.runs_here and "pip install bitsandbytes" in info.why_not, info
        try:
            OPTIMIZERS.build(dict(type="Adam8bit", params=torch.nn.Linear(2, 2).parameters()))
        except OptimizerUnavailableError as exc:
            print(exc)
        from visdet.engine.optim.build.constructor import OptimWrapperConstructor
        try:
            OptimWrapperConstructor(dict(optimizer=dict(type="AdamW8bit", lr=1e-3)))
        except OptimizerUnavailableError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "'Adam8bit' cannot run here: bitsandbytes is not installed (pip install bitsandbytes)" in result.stdout
    assert (
        "optim_wrapper.optimizer.type: 'AdamW8bit' cannot run here: bitsandbytes is not installed "
        "(pip install bitsandbytes)" in result.stdout
    )


def test_a_package_that_fails_to_import_is_reported_not_fatal():
    result = run_python(
        """
        import sys, importlib.abc
        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "dadaptation.dadapt_adam":
                    raise RuntimeError("simulated broken install")
        sys.meta_path.insert(0, Broken())
        import torch, visdet
        from visdet.registry import OPTIMIZERS
        from visdet.engine.optim import list_optimizers, OptimizerUnavailableError
        assert "DAdaptAdam" in OPTIMIZERS.module_dict   # found by reading source
        try:
            OPTIMIZERS.build(dict(type="DAdaptAdam", params=torch.nn.Linear(2, 2).parameters()))
        except OptimizerUnavailableError as exc:
            print("ERROR:", exc)
        (info,) = list_optimizers("DAdaptAdam")
        print("LISTED:", info.runs_here, info.why_not)
        """
    )
    assert result.returncode == 0, result.stderr
    expected = "ERROR: optim_wrapper.optimizer: DAdaptAdam: D-Adaptation 3.2 is installed but failed to import"
    assert expected in result.stdout
    assert "simulated broken install" in result.stdout
    assert "LISTED: False D-Adaptation" in result.stdout


def test_a_class_missing_from_the_installed_version_names_the_version():
    class OlderDeepSpeed(Source):
        def discover(self) -> dict[str, str]:
            return {n: m for n, m in super().discover().items() if n != "OnebitAdam"}

    catalog = OptimizerCatalog([OlderDeepSpeed(**_fields(DEEPSPEED))])
    entry = catalog.entries["OnebitAdam"]
    assert not entry.present
    assert entry.why_not() == (
        f"not in the installed DeepSpeed {entry.source.version} "
        "(removed in 0.19.7; pip install 'deepspeed<0.19.7')"
    )
    registry = OptimizerRegistry("optimizer-test")
    assert "OnebitAdam" not in register_all_optimizers(registry, catalog)


def test_unknown_type_suggests_close_names(small_net):
    with pytest.raises(OptimizerConfigError) as info:
        OPTIMIZERS.build(dict(type="Adamw", params=small_net.parameters()))
    message = str(info.value)
    assert message.startswith("optim_wrapper.optimizer.type: unknown optimizer type 'Adamw'; did you mean 'AdamW'")
    assert isinstance(info.value, ValueError)


def test_lazy_placeholder_is_never_handed_out():
    for name in OPTIMIZERS.module_dict:
        entry = get_catalog().lookup(name)
        if entry is not None and entry.why_not():
            continue
        assert not isinstance(OPTIMIZERS.module_dict[name], LazyOptimizerClass)


def test_plain_mmengine_registry_can_be_filled_too():
    registry = Registry("plain-optimizers")
    names = register_all_optimizers(registry)
    assert "AdamW8bit" in names and "AdamW" in registry.module_dict


def test_a_source_that_cannot_be_inspected_leaves_the_others_working():
    class Exploding(Source):
        def discover(self) -> dict[str, str]:
            raise PermissionError("cannot read site-packages/deepspeed")

    catalog = OptimizerCatalog([default_sources()[0], Exploding(**_fields(DEEPSPEED))])
    assert catalog.entries["AdamW"].present
    entry = catalog.entries["FusedAdam"]
    assert not entry.present
    assert entry.why_not() == "DeepSpeed could not be inspected (PermissionError: cannot read site-packages/deepspeed)"


def test_registry_info_gives_the_listing_record():
    info = OPTIMIZERS.info("AdamW8bit")
    assert info.source == "bitsandbytes" and info.import_path == "bitsandbytes.optim.AdamW8bit"
    with pytest.raises(OptimizerConfigError, match="did you mean 'AdamW8bit'"):
        OPTIMIZERS.info("AdamW8bits")


def test_building_adafactor_prints_nothing(capfd):
    """mmengine's optimizer builder prints a TorchAdafactor remark for type='Adafactor'; visdet's does not."""
    from visdet.registry import OPTIMIZERS

    if OPTIMIZERS.info("Adafactor").why_not:
        pytest.skip(OPTIMIZERS.info("Adafactor").why_not)
    layer = torch.nn.Linear(4, 4)
    OPTIMIZERS.build(dict(type="Adafactor", params=layer.parameters(), lr=1e-3, relative_step=False))
    assert "TorchAdafactor" not in capfd.readouterr().out
