"""``list_optimizers()``: what visdet knows, what runs here, and why not.

The same records feed ``tools/list_optimizers.py`` (table or JSON) and the
registry's build-time errors, so the listing and the errors never disagree.
"""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass

from visdet.engine.optim.catalog import aliases
from visdet.engine.optim.catalog.catalogue import CatalogEntry, get_catalog
from visdet.utils.tables import text_table

#: Aliases shown per row of the table (all of them are in the JSON and in docs/aliases.md).
MAX_ALIASES = 3


@dataclass(frozen=True)
class OptimizerInfo:
    """One row of the listing."""

    name: str
    source: str
    version: str | None
    runs_here: bool
    why_not: str
    state_bytes_per_param: float | None
    state: str
    devices: tuple[str, ...]
    description: str
    notes: str
    import_path: str
    aliases: tuple[str, ...]  # other-ecosystem spellings that build it (docs/aliases.md)
    alias_defaults: dict[str, dict]  # alias -> the keywords it sets

    def as_dict(self) -> dict:
        return asdict(self)


def info_for(entry: CatalogEntry) -> OptimizerInfo:
    """The listing record of one catalogue entry."""
    spec = entry.spec
    reason = entry.why_not()
    return OptimizerInfo(
        name=spec.name,
        source=spec.source,
        version=entry.source.version,
        runs_here=not reason,
        why_not=reason,
        state_bytes_per_param=spec.state_bytes,
        state=spec.state_text(),
        devices=spec.devices,
        description=spec.description,
        notes=spec.notes,
        import_path=spec.import_path,
        aliases=spec.aliases,
        alias_defaults={name: dict(_alias_defaults(name)) for name in spec.aliases},
    )


def _alias_defaults(spelling: str) -> dict:
    item = aliases.find(spelling)
    return dict(item.defaults) if isinstance(item, aliases.Alias) else {}


def list_optimizers(pattern: str | None = None, available: bool = False, verify: bool = False) -> list[OptimizerInfo]:
    """Every optimizer visdet knows of, in registry order.

    Args:
        pattern: Shell-style filter on the name, case-insensitive (``'*adam*'``).
        available: Only those that can run on this machine now.
        verify: Import each candidate's class (quietly) so that a package that
            is installed but broken is reported as such. Slow: it imports
            every installed backend (seconds each).
    """
    entries = list(get_catalog().entries.values())
    if pattern:
        entries = [e for e in entries if _matches(e, pattern.lower())]
    if verify:
        for entry in entries:
            if entry.present and not entry.why_not():
                try:
                    entry.resolve()
                except ValueError:
                    pass  # the failure is now recorded in entry.import_error
    infos = [info_for(e) for e in entries]
    return [i for i in infos if i.runs_here] if available else infos


def _matches(entry: CatalogEntry, pattern: str) -> bool:
    """The pattern matches the name or one of its aliases (so ``adamw_torch_fused`` finds AdamW)."""
    return any(fnmatch.fnmatch(name.lower(), pattern) for name in (entry.spec.name, *entry.spec.aliases))


def alias_status(name: str) -> str:
    """For a spelling the listing has no row for: what visdet makes of it as an alias, or ``""``."""
    item = aliases.find(name)
    if item is None:
        return ""
    if isinstance(item, aliases.Refusal):
        return f"{aliases.describe(item)} is not accepted: {item.reason}"
    entry = get_catalog().by_class(item.target)
    if entry is None:
        return f"{aliases.describe(item)} maps to {item.target}, which this visdet has no source for"
    return f"{aliases.describe(item)} maps to '{entry.spec.name}'"


def format_table(infos: list[OptimizerInfo], reason_width: int = 40) -> str:
    """A plain-text table for terminals; long reasons are given in full below it."""
    headers = ["name", "source", "version", "runs here", "why not", "state B/param", "aliases", "description"]
    rows = []
    for i in infos:
        reason = i.why_not or "-"
        short = reason if len(reason) <= reason_width else reason[: reason_width - 3] + "..."
        more = len(i.aliases) - MAX_ALIASES
        shown = ", ".join(i.aliases[:MAX_ALIASES]) + (f" +{more}" if more > 0 else "")
        row = [i.name, i.source, i.version or "-", "yes" if i.runs_here else "no", short, i.state, shown or "-"]
        rows.append(row + [i.description + (f" [{i.notes}]" if i.notes else "")])
    lines = text_table(headers, rows)
    long_reasons = [i for i in infos if len(i.why_not) > reason_width]
    if long_reasons:
        lines += ["", "Why not, in full:"] + [f"  {i.name}: {i.why_not}" for i in long_reasons]
    return "\n".join(lines)
