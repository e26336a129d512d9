"""Tables that fit the terminal without cutting a value.

rich shrinks a too-wide table by wrapping or truncating cells, which turns
``2017-03-01T00:00:00Z`` into ``2017…`` and ``accuracy`` into ``accu…``: the value is lost.
Here a value is never cut. Long headers fold onto two lines (``test`` / ``from``), and when
the table still does not fit, whole columns go, least useful first, and the caption says
which (``--json`` always has them all).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Justify = Literal["left", "right", "center"]

#: What rich's default box with padding (0, 1) adds: 2 spaces per column, n + 1 rules.
PAD_PER_COLUMN = 3
EDGE = 1


@dataclass(frozen=True)
class Col:
    """One column: its header, alignment and how much it matters.

    Attributes:
        header: the column title (folds at spaces when wider than its values).
        justify: alignment of the values.
        keep: importance; when the table is too wide, the lowest ``keep`` goes first
            (ties: the rightmost first). ``None`` means never drop it.
    """

    header: str
    justify: Justify = "right"
    keep: int | None = None


def compact_time(iso: str | None) -> str:
    """``2018-01-02T10:00:00Z`` -> ``2018-01-02 10:00`` (UTC; nothing lost for whole minutes)."""
    if not iso:
        return "-"
    if len(iso) == 20 and iso.endswith(":00Z") and iso[10] == "T":
        return f"{iso[:10]} {iso[11:16]}"
    return iso


def _fold(header: str, width: int) -> str:
    """``header`` on as many lines as needed to be ``width`` wide (never splitting words)."""
    if len(header) <= width or " " not in header:
        return header
    return "\n".join(textwrap.wrap(header, max(width, *(len(w) for w in header.split()))))


def _widths(cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> list[tuple[str, int]]:
    out = []
    for i, col in enumerate(cols):
        cell = max((len(r[i]) for r in rows), default=0)
        header = _fold(col.header, cell)
        out.append((header, max(cell, *(len(line) for line in header.split("\n")))))
    return out


def table_width(widths: Sequence[int]) -> int:
    """Characters a rich table with these column widths takes."""
    return sum(w + PAD_PER_COLUMN for w in widths) + EDGE


def fit_table(
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    title: str | None = None,
    row_styles: Sequence[str | None] | None = None,
) -> Any:
    """A rich ``Table`` of ``rows`` no wider than ``width`` whose cells are never cut.

    Args:
        cols: the columns, in display order.
        rows: the cells as text (format numbers before).
        width: the console width to fit.
        title: the table title.
        row_styles: a rich style per row (or ``None``).

    Returns:
        The table; a caption names the columns left out to fit, if any.
    """
    from rich.table import Table

    shown = list(range(len(cols)))
    sized = _widths(cols, rows)
    droppable = sorted(
        (i for i, c in enumerate(cols) if c.keep is not None),
        key=lambda i: (cols[i].keep, -i),
    )
    dropped: list[int] = []
    while table_width([sized[i][1] for i in shown]) > width and droppable:
        gone = droppable.pop(0)
        shown.remove(gone)
        dropped.append(gone)
    caption = None
    if dropped:
        names = ", ".join(cols[i].header for i in sorted(dropped))
        caption = f"not shown at {width} columns: {names} (widen the terminal or use --json)"
    table = Table(title=title, caption=caption)
    for i in shown:
        header, w = sized[i]
        table.add_column(header, justify=cols[i].justify, no_wrap=True, min_width=w)
    styles = row_styles or [None] * len(rows)
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*(row[i] for i in shown), style=style)
    return table
