"""``--optimizers AdamW,SGD,Lion``: which optimizers a comparison trains, and why any of them cannot run here.

Names are read as a config's ``optim_wrapper.optimizer.type`` is: a registry
name or another ecosystem's alias (``adamw_torch_fused``), looked up in the
catalogue that ``tools/list_optimizers.py`` prints. A misspelt name is a
mistake of the command (did-you-mean, before anything trains); a real name that
cannot run on this machine (a CUDA-only one on a CPU machine) is kept, so the
table lists it with the catalogue's reason instead of dropping it silently.
"""
from __future__ import annotations

from dataclasses import dataclass

from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.catalog.catalogue import get_catalog
from visdet.engine.optim.config.composed_names import LOOKAHEAD, composed_parts
from visdet.errors import ConfigError
from visdet.utils.suggestions import suggestion_text

#: The command-line key every message about the list names.
KEY = "--optimizers"


@dataclass(frozen=True)
class Choice:
    """One optimizer of the comparison.

    Attributes:
        name: As the user wrote it (the config's ``type`` and the row's label).
        canonical: The catalogue's registry name (what a config's own optimizer is compared with).
        why_not: Why it cannot run here ('' when it can).
    """

    name: str
    canonical: str
    why_not: str = ""


def parse_optimizers(text: str | None) -> list[Choice]:
    """The comma-separated list, each name checked; raises :class:`ConfigError` naming ``--optimizers``."""
    names = [n.strip() for n in (text or "").split(",")]
    if not text or not any(names):
        raise ConfigError("give at least one optimizer, e.g. --optimizers AdamW,SGD,Lion "
                          "(python tools/list_optimizers.py lists them)", KEY)
    if any(not n for n in names):
        raise ConfigError(f"'{text}' has an empty name; separate names with single commas", KEY)
    choices = [choose(n) for n in names]
    seen: dict[tuple[str, str], str] = {}
    for choice in choices:
        # The same class with the same settings twice; an alias that sets keywords (adamw_torch_fused:
        # fused=True) is a different candidate from the plain name.
        key = (choice.canonical, _alias_defaults(choice.name))
        if key in seen:
            first = seen[key]
            same = f"'{first}' and '{choice.name}' are both {choice.canonical}" if first != choice.name \
                else f"'{first}' is given twice"
            raise ConfigError(f"{same}; each optimizer is trained once, list it once", KEY)
        seen[key] = choice.name
    return choices


def _alias_defaults(name: str) -> str:
    item = aliases.find(name) if get_catalog().entries.get(name) is None else None
    return aliases.defaults_text(item.defaults) if isinstance(item, aliases.Alias) else ""


def choose(name: str) -> Choice:
    """One name: its catalogue entry and whether it runs here."""
    catalog = get_catalog()
    entry = catalog.lookup(name)
    if entry is not None:
        return Choice(name, entry.spec.name, entry.why_not())
    item = aliases.find(name)
    if isinstance(item, aliases.Refusal):  # a known spelling visdet refuses: a row with the reason
        return Choice(name, name, f"{aliases.describe(item)} is not accepted: {item.reason}")
    if isinstance(item, aliases.Alias):  # a known spelling whose package is not here
        return Choice(name, name, f"{aliases.describe(item)} maps to {item.target}, which this visdet has no "
                                  "source for")
    inner = composed_parts(name)
    if isinstance(inner, str) and catalog.lookup(inner) is not None:  # timm's lookahead_<name>
        lookahead = catalog.by_class(LOOKAHEAD)
        return Choice(name, name, lookahead.why_not() if lookahead is not None else "")
    raise ConfigError(f"unknown optimizer '{name}'{suggestion_text(name, catalog.names())} "
                      "(python tools/list_optimizers.py lists every name)", KEY)
