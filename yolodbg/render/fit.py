"""Tables that fit the console: columns are chosen by width, a value is never cut.

Rich shrinks a table that is wider than the console by cutting cells to ``0.…``. The
reports here instead know each column's natural width (its widest cell) and its
importance: when the table does not fit, the least important columns are left out (and
named under the table, ``--wide`` shows them); when even the essential ones do not fit, the
remaining columns continue in a second table that repeats the key columns. Numbers of one
column share one notation (:func:`numbers`), so fixed and scientific never mix in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

WIDE = 10_000  # the console width of --wide: every column, lines as long as their content
PAD = 2  # rich's default cell padding: one space each side
NOTE_STYLE = "dim"


def numbers(values: Iterable[float | None], digits: int = 4, signed: bool = False) -> list[str]:
    """One column of numbers in one notation: fixed with ``digits`` decimals, or scientific for all
    of them when any non-zero value is below 1e-3 or from 1e4 up (``0`` and ``—`` stay as they are).

    >>> numbers([0.5, 0.25]), numbers([0.5, 2e-5]), numbers([None, 0.0, 1.5], 2, signed=True)
    (['0.5000', '0.2500'], ['5.000e-01', '2.000e-05'], ['—', '0', '+1.50'])
    """
    vals = list(values)
    finite = [abs(v) for v in vals if v is not None and math.isfinite(v) and v != 0]
    sci = any(a < 1e-3 or a >= 1e4 for a in finite)
    spec = f"{'+' if signed else ''}.{3 if sci else digits}{'e' if sci else 'f'}"
    return [_number(v, spec) for v in vals]


def _number(v: float | None, spec: str) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    return format(v, spec)


def cell_width(cell: Any) -> int:
    """Columns a cell takes on one line (its widest line)."""
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max((cell_len(line) for line in text.split("\n")), default=0)


@dataclass
class Col:
    """A table column: ``drop`` 0 is always shown; a larger ``drop`` is left out earlier when the
    table is too wide; ``key`` columns are repeated in a continuation table."""

    header: str
    justify: str = "right"
    drop: int = 0
    key: bool = False
    style: str = ""
    cells: list[Any] = field(default_factory=list)

    @property
    def width(self) -> int:
        return max([cell_width(self.header), *(cell_width(c) for c in self.cells)])


def table_width(cols: Sequence[Col]) -> int:
    """Width of a rich table without outer edge: each cell padded, one rule between columns."""
    return sum(c.width + PAD for c in cols) + max(len(cols) - 1, 0)


class Grid:
    """A titled table built column by column and rendered to fit a width (see the module docstring)."""

    def __init__(self, title: str | Text | None, cols: Sequence[Col]) -> None:
        self.title = title
        self.cols = list(cols)

    def row(self, *cells: Any) -> None:
        if len(cells) != len(self.cols):
            raise ValueError(f"{len(cells)} cells for {len(self.cols)} columns")
        for col, cell in zip(self.cols, cells, strict=True):
            col.cells.append(cell)

    def column(self, header: str) -> Col:
        return next(c for c in self.cols if c.header == header)

    def render(self, width: int, wide: bool = False) -> list[Any]:
        """The title, the table (or tables) and, when columns were left out, a note naming them."""
        kept, dropped = choose_columns(self.cols, width if not wide else WIDE)
        out: list[Any] = []
        if self.title is not None:
            out.append(self.title if isinstance(self.title, Text) else Text(self.title, style="bold"))
        for i, part in enumerate(continue_columns(kept, width if not wide else WIDE)):
            if i:
                out.append(Text("(continued)", style=NOTE_STYLE))
            out.append(_table(part))
        if dropped:
            out += [Text(line, style=NOTE_STYLE) for line in hidden_note(dropped, width)]
        return out


def hidden_note(dropped: Sequence[Col], width: int) -> list[str]:
    """``not shown at 80 columns: a, b (--wide shows them)``, wrapped between names, never inside one."""
    names = [f"{c.header}," for c in dropped]
    names[-1] = names[-1][:-1]
    words = ["not", "shown", "at", str(width), "columns:", *names, "(--wide", "shows", "them)"]
    return ["  " + line for line in lines(words, width - 2, indent="  ", sep=" ")]


def choose_columns(cols: Sequence[Col], width: int) -> tuple[list[Col], list[Col]]:
    """The columns that fit in ``width``, leaving out the largest ``drop`` first (the rightmost on ties)."""
    kept = list(cols)
    order = sorted((c for c in cols if c.drop), key=lambda c: (-c.drop, -cols.index(c)))
    dropped = []
    for c in order:
        if table_width(kept) <= width:
            break
        kept.remove(c)
        dropped.append(c)
    return kept, [c for c in cols if c in dropped]


def continue_columns(cols: list[Col], width: int) -> list[list[Col]]:
    """Split columns that still do not fit into parts of at most ``width``, each repeating the key columns."""
    if table_width(cols) <= width:
        return [cols]
    keys = [c for c in cols if c.key]
    parts: list[list[Col]] = []
    current = list(keys)
    for c in cols:
        if c.key:
            continue
        if len(current) > len(keys) and table_width([*current, c]) > width:
            parts.append(current)
            current = list(keys)
        current.append(c)
    parts.append(current)
    return parts


def _table(cols: Sequence[Col]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for c in cols:
        table.add_column(c.header, justify=c.justify, no_wrap=True, min_width=c.width, style=c.style or None)
    for i in range(len(cols[0].cells) if cols else 0):
        table.add_row(*(c.cells[i] for c in cols))
    return table


def lines(parts: Iterable[str], width: int, indent: str = "  ", sep: str = " · ") -> list[str]:
    """Join ``parts`` with ``sep`` into lines of at most ``width``; a part never breaks across lines
    (continuation lines start with ``indent``)."""
    out: list[str] = []
    line = ""
    for p in parts:
        candidate = p if not line else f"{line}{sep}{p}"
        if line and cell_len(candidate) > width:
            out.append(line)
            candidate = indent + p
        line = candidate
    if line:
        out.append(line)
    return out


def console(wide: bool = False, **kwargs: Any):
    """The report's console: the terminal's width (80 through a pipe), or unbounded with ``--wide``."""
    from rich.console import Console

    return Console(width=WIDE, **kwargs) if wide else Console(**kwargs)
