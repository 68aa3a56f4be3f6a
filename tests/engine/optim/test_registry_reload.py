"""Reloading the optimizer modules (IPython's %autoreload, importlib.reload) keeps OPTIMIZERS working.

Reloads change module identity for everything imported afterwards, so they run
in a fresh interpreter and leave this test process untouched.
"""
from __future__ import annotations

from testutils import run_python

RELOAD_EVERY_MODULE = """
import importlib, pkgutil, sys
import torch
import visdet.engine.optim as optim_pkg
import visdet.registry
from visdet.registry import OPTIMIZERS

original = OPTIMIZERS

@OPTIMIZERS.register_module(name="UserSGD")
class UserSGD(torch.optim.SGD):  # a user's class must survive every reload
    pass

modules = ["visdet.registry", "visdet.engine.optim"] + sorted(
    m.name for m in pkgutil.walk_packages(optim_pkg.__path__, optim_pkg.__name__ + "."))
# registration first: the stand-ins made before it are then from the old LazyOptimizerClass
modules.remove("visdet.engine.optim.registry")
modules.insert(0, "visdet.engine.optim.registry")
modules.append("visdet.registry")  # the registry again, after its classes were re-created
for name in modules:
    reg = sys.modules["visdet.engine.optim.registry"]
    for opt in ("AdamW8bit", "AdamW"):  # unresolved stand-ins, as before any first use
        dict.__setitem__(OPTIMIZERS.module_dict, opt, reg.LazyOptimizerClass(reg.get_catalog().entries[opt]))
    importlib.reload(importlib.import_module(name))
    from visdet.registry import OPTIMIZERS as now
    import bitsandbytes
    assert now is original, name
    assert now.get("AdamW8bit") is bitsandbytes.optim.AdamW8bit, (name, now.get("AdamW8bit"))
    assert now.get("AdamW") is torch.optim.AdamW, (name, now.get("AdamW"))
    assert now.get("UserSGD") is UserSGD, name
    opt = now.build(dict(type="AdamW", params=torch.nn.Linear(2, 2).parameters(), lr=1e-3))
    assert type(opt) is torch.optim.AdamW, name
"""


def test_get_returns_the_real_class_after_reloading_each_optimizer_module():
    result = run_python(RELOAD_EVERY_MODULE)
    assert result.returncode == 0, result.stderr[-3000:]


def test_reloading_registration_then_registry_keeps_one_registry_and_real_classes():
    # The reported sequence, with no lookup before the reloads: nothing resolved yet.
    result = run_python(
        """
        import importlib
        import visdet.registry, visdet.engine.optim.registry as reg
        from mmengine.registry import OPTIMIZERS as ROOT
        before = visdet.registry.OPTIMIZERS
        importlib.reload(reg)
        assert visdet.registry.OPTIMIZERS.get("AdamW8bit").__name__ == "AdamW8bit"
        importlib.reload(visdet.registry)
        from visdet.registry import OPTIMIZERS
        import bitsandbytes, torch
        assert OPTIMIZERS is before and ROOT.children["visdet"] is before
        assert OPTIMIZERS.get("AdamW8bit") is bitsandbytes.optim.AdamW8bit
        assert OPTIMIZERS.get("AdamW") is torch.optim.AdamW
        assert "<lazy" not in repr(OPTIMIZERS.get("Lion"))
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
