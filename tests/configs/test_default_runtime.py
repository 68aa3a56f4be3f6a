"""configs/_base_/default_runtime.py resolves through the visdet scope with no manual import."""
from __future__ import annotations

from testutils import run_python


def test_visdet_scope_config_builds_optimizer_and_hooks_without_importing_visdet():
    result = run_python(
        """
        import sys, torch
        from mmengine.config import Config
        from mmengine.optim import build_optim_wrapper
        from mmengine.registry import HOOKS, init_default_scope
        from mmengine.runner import Runner  # noqa: F401  as tools/train.py does; fills mmengine.hooks

        cfg = Config.fromfile("configs/_base_/default_runtime.py")
        cfg.merge_from_dict(dict(optim_wrapper=dict(type="OptimWrapper",
                                                    optimizer=dict(type="AdamW8bit", lr=1e-3))))
        assert "visdet" not in sys.modules
        init_default_scope(cfg.default_scope)
        wrapper = build_optim_wrapper(torch.nn.Linear(64, 64), cfg.optim_wrapper)
        assert "visdet.registry" in sys.modules          # mmengine imported it by scope
        assert type(wrapper.optimizer).__module__.startswith("bitsandbytes."), type(wrapper.optimizer)
        hooks = [HOOKS.build(h) for h in cfg.default_hooks.values()]
        print(len(hooks))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "5"
