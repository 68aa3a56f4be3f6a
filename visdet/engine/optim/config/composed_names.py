"""timm's composed optimizer names: ``lookahead_<name>`` is timm's Lookahead around ``<name>``.

timm's ``create_optimizer_v2`` splits ``opt`` on ``'_'``: a ``lookahead``
prefix builds the optimizer the rest names and wraps it in timm's
``Lookahead`` (its defaults, ``alpha=0.5, k=6``), and every other argument
(``lr``, ``weight_decay``, ``momentum``...) goes to the inner optimizer. The
alias table (``catalog/aliases.py``) maps one name to one class, so this
spelling is expanded here into the nested config visdet already reads
(``config/nested_optimizer.py``): ``dict(type='lookahead_adamw', lr=1e-3)``
becomes ``dict(type=<timm's Lookahead>, base_optimizer=dict(type='timm:adamw', lr=1e-3))``.
The inner name means what timm means by it (``'timm:<name>'`` when that alias
exists). Lookahead's own ``alpha``/``k`` cannot be given in this spelling,
as in timm; write the nested config for them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.catalog.aliases import Target
from visdet.engine.optim.catalog.catalogue import get_catalog
from visdet.engine.optim.errors import OptimizerConfigError, OptimizerUnavailableError

PREFIX = "lookahead_"
#: The class timm's prefix builds, and the keyword it takes the inner optimizer by.
LOOKAHEAD = Target("timm", "Lookahead")
INNER_KEYWORD = "base_optimizer"


def composed_parts(name: Any) -> str | None:
    """The inner name of a ``lookahead_<name>`` spelling (``'timm:'`` allowed before it), else None."""
    if not isinstance(name, str):
        return None
    bare = name.removeprefix(f"timm{aliases.SEPARATOR}")
    if not bare.lower().startswith(PREFIX) or len(bare) == len(PREFIX):
        return None
    return bare[len(PREFIX):]


def expand_composed(cfg: Mapping[str, Any], key: str, known: Any) -> Mapping[str, Any]:
    """``cfg`` with a ``lookahead_<name>`` type written as Lookahead nesting ``<name>``; others unchanged.

    Args:
        cfg: The optimizer config.
        key: Its config key, for messages.
        known: Whether a name is a registry name (``name in OPTIMIZERS``): those are never rewritten.
    """
    written = cfg.get("type")
    inner = composed_parts(written)
    if inner is None or known(written):
        return cfg
    type_key = f"{key}.type"
    timm_name = f"timm{aliases.SEPARATOR}{inner}"
    inner_type = timm_name if aliases.find(timm_name) is not None else inner
    if aliases.find(inner_type) is None and not known(inner_type):
        raise OptimizerConfigError(
            f"'{written}' is timm's composed name for Lookahead around '{inner}', which is not an optimizer name "
            "here (neither timm's nor visdet's); run `python tools/list_optimizers.py` for the names", type_key)
    entry = get_catalog().by_class(LOOKAHEAD)
    if entry is None or not entry.present:
        raise OptimizerUnavailableError(
            f"'{written}' is timm's Lookahead around '{inner}', and timm is not installed here: "
            "pip install -e '.[timm]' (or write type='Lookahead', optimizer=dict(type=...) for "
            "pytorch-optimizer's Lookahead)", type_key)
    own = {k: v for k, v in cfg.items() if k != "type"}
    return {"type": entry.spec.name, INNER_KEYWORD: {"type": inner_type, **own}}
