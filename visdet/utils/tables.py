"""Plain-text tables for terminals: the one layout every visdet listing and report prints."""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The lines of a table: the header, a rule of dashes, then one line per row.

    Columns are left-aligned and two spaces apart. The last column is free
    text: it is not padded, and its rule is as wide as its header, so a long
    description does not stretch the rule. Trailing spaces are dropped.
    """
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(header[i]), *(len(r[i]) for r in cells)]) for i in range(len(header) - 1)]
    rule = ["-" * w for w in widths] + ["-" * len(header[-1])]

    def line(row: Sequence[str]) -> str:
        return "  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]).rstrip()

    return [line(list(header)), line(rule), *(line(r) for r in cells)]
