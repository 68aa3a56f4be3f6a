"""``paramwise_cfg.custom_keys[key].optimizer``: per-module optimizer types, checked like ``optim_wrapper.optimizer``.

``custom_keys={'backbone': dict(optimizer=dict(type='SGD', momentum=0.9))}``
sends the parameters that key matches (the longest matching key wins, as for
every ``custom_keys`` entry) to their own optimizer. The constructor puts the
routes behind one ``HybridOptimizer``, so schedulers, clipping and checkpoints
see one optimizer. mmengine has no such key; its users write a constructor
subclass or an ``OptimWrapperDict`` with its own training loop, which this
replaces. Each nested dict gets the checks of the main optimizer
(``parse_optimizer_cfg``; the config is only read), with its own key path.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visdet.engine.optim.config.optimizer_config import OptimizerConfig, parse_optimizer_cfg
from visdet.engine.optim.config.paramwise import check_paramwise_cfg
from visdet.engine.optim.errors import OptimizerConfigError


def parse_custom_optimizers(
    paramwise_cfg: Mapping[str, Any], reserved: tuple[str, ...], key: str = "optim_wrapper.paramwise_cfg"
) -> dict[str, OptimizerConfig]:
    """The checked optimizer of every ``custom_keys`` entry that has one, by its key (the route's name).

    Args:
        paramwise_cfg: The ``paramwise_cfg`` dict (its other keys are checked elsewhere).
        reserved: Route names the main optimizer uses (``'main'``, ``'matrix'``, ``'fallback'``).
        key: Config path of ``paramwise_cfg``.

    Raises:
        OptimizerConfigError: a bad nested optimizer (unknown type or keyword, a bad
            value, a matrix-only or sharded one), or an entry key that would hide a
            main route; the message names e.g. ``...custom_keys['backbone'].optimizer.type``.
    """
    custom_keys = paramwise_cfg.get("custom_keys") or {}
    if not isinstance(custom_keys, Mapping):
        return {}  # check_paramwise_cfg reports it
    routes: dict[str, OptimizerConfig] = {}
    for pattern, rule in custom_keys.items():
        if not isinstance(rule, Mapping) or "optimizer" not in rule:
            continue
        path = f"{key}.custom_keys[{pattern!r}]"
        if pattern in reserved:
            raise OptimizerConfigError(
                f"a custom_keys entry with its own optimizer names a route, and {pattern!r} is taken by the main "
                f"optimizer's routes ({', '.join(reserved)}); use a longer part of the parameter names", path
            )
        parsed = parse_optimizer_cfg(rule["optimizer"], f"{path}.optimizer", allow_hybrid=False)
        if parsed.is_hybrid or parsed.inner is not None:
            raise OptimizerConfigError(
                f"{parsed.name} cannot be a per-module optimizer (it needs a fallback or shards another "
                "optimizer); use a plain optimizer such as type='SGD' or type='AdamW' here",
                f"{path}.optimizer.type",
            )
        rest = {k: v for k, v in rule.items() if k != "optimizer"}
        # The entry's other keys (lr_mult, decay_mult, betas...) are checked against this route's class.
        check_paramwise_cfg({"custom_keys": {pattern: rest}}, parsed.keywords, parsed.kwargs, key,
                            optimizer_key=f"{path}.optimizer")
        routes[pattern] = parsed
    return routes
