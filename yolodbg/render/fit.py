"""Tables that fit the console: columns are chosen by width, a value is never cut.

The one table layout of every report (``explain``, ``compare``, ``scan``, ``check``, ``trend``,
``recipes``). Rich shrinks a table that is wider than the console by cutting cells to ``0.…``.
The reports here instead know each column's natural width (its widest cell) and its rank
(``Col.drop``): when the table does not fit, the columns of the highest rank are left out first
(and named under the table in one wording, ``not shown at 80 columns: … (--wide shows them)``);
when even the essential ones do not fit, the remaining columns continue in a second table that
repeats the key columns. Tables are plain columns two spaces apart with a bold header, so they
paste into an issue as they look. Numbers of one column share one notation
(:func:`number_format`, :func:`numbers`), so fixed and scientific never mix in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

WIDE = 10_000  # the console width of --wide: every column, lines as long as their content
GAP = 2  # columns are two spaces apart (padding 1 on each side, none at the table's edges)
NOTE_STYLE = "dim"
NOTE_INDENT = "  "  # notes under a table (left-out columns, legends) are indented this much
SCI_BELOW = 1e-4  # a column holding a smaller nonzero magnitude is written in scientific notation
SCI_FROM = 1e6  # ... and one holding a magnitude at least this large


def number_format(
    values: Iterable[float | None], digits: int = 4, signed: bool = False
) -> Callable[[float | None], str]:
    """A formatter for every number of one column: one notation for all of them.

    Fixed with ``digits`` decimals, more (up to 6) when the smallest nonzero magnitude needs them
    for two significant digits; scientific (``1.234e-05``) for the whole column when a magnitude is
    below 1e-4 or at least 1e6. Zero is ``0``, a missing value ``—``, non-finite ``nan``/``inf``;
    ``signed`` writes ``+`` before positive values (a column of differences).
    """
    mags = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    sci = bool(mags) and (min(mags) < SCI_BELOW or max(mags) >= SCI_FROM)
    places = digits
    if mags and not sci:
        places = min(max(digits, math.ceil(-math.log10(min(mags))) + 1 + (min(mags) < 1)), 6)
    spec = f"{'+' if signed else ''}.{3 if sci else places}{'e' if sci else 'f'}"

    def fmt(v: float | None) -> str:
        if v is None:
            return "—"
        if v == 0:
            return "0"
        if not math.isfinite(v):
            return str(v)
        return format(v, spec)

    return fmt


def numbers(values: Iterable[float | None], digits: int = 4, signed: bool = False) -> list[str]:
    """One column of numbers written by one :func:`number_format`.

    >>> numbers([0.5, 0.25]), numbers([0.5, 2e-5]), numbers([None, 0.0, 1.5], 2, signed=True)
    (['0.5000', '0.2500'], ['5.000e-01', '2.000e-05'], ['—', '0', '+1.50'])
    """
    vals = list(values)
    fmt = number_format(vals, digits, signed)
    return [fmt(v) for v in vals]


def cell_width(cell: Any) -> int:
    """Columns a cell takes on one line (its widest line)."""
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max((cell_len(line) for line in text.split("\n")), default=0)


@dataclass
class Col:
    """A table column: ``drop`` is its rank, 0 always shown, a larger one left out earlier when the
    table is too wide (the rightmost first among equals); ``key`` columns (what names a row) are
    repeated in a continuation table."""

    header: str
    cells: list[Any] = field(default_factory=list)
    justify: str = "right"
    drop: int = 0
    key: bool = False
    style: str = ""

    @property
    def width(self) -> int:
        return max([cell_width(self.header), *(cell_width(c) for c in self.cells)])


def table_width(cols: Sequence[Col]) -> int:
    """Width of a table as :func:`table` draws it: the columns' widths and two spaces between them."""
    return sum(c.width for c in cols) + GAP * max(len(cols) - 1, 0)


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
            out.append(table(part))
        if dropped:
            out += [Text(line, style=NOTE_STYLE) for line in hidden_note(dropped, width)]
        return out


def hidden_note(dropped: Sequence[Col], width: int) -> list[str]:
    """``not shown at 80 columns: a, b (--wide shows them)``, wrapped between names, never inside one."""
    names = [f"{c.header}," for c in dropped]
    names[-1] = names[-1][:-1]
    return note_lines(
        ["not", "shown", "at", str(width), "columns:", *names, "(--wide", "shows", "them)"], width
    )


def note_lines(words: Sequence[str], width: int) -> list[str]:
    """A note under a table: indented, wrapped between words at ``width``, continuation lines indented
    further (every report's notes read the same)."""
    return [NOTE_INDENT + line for line in lines(words, width - len(NOTE_INDENT), indent="  ", sep=" ")]


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


def table(cols: Sequence[Col]) -> Table:
    """Plain columns two spaces apart under a bold header: no box, nothing to misread when pasted."""
    out = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
    for c in cols:
        out.add_column(c.header, justify=c.justify, no_wrap=True, min_width=c.width, style=c.style or None)
    for i in range(max((len(c.cells) for c in cols), default=0)):
        out.add_row(*(c.cells[i] if i < len(c.cells) else "" for c in cols))
    return out


def show(console: Console, grid: Grid, wide: bool = False) -> list[Col]:
    """Print ``grid`` fitted to ``console``'s width and return the columns shown; with ``wide`` a
    table wider than the console is printed whole, not cropped."""
    kept, _ = choose_columns(grid.cols, WIDE if wide else console.width)
    for part in grid.render(console.width, wide):
        need = console.measure(part, options=console.options.update_width(WIDE)).maximum
        if isinstance(part, Table) and need > console.width:
            console.print(part, width=need, crop=False)
        else:
            console.print(part)
    return kept


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


def console(wide: bool = False, **kwargs: Any) -> Console:
    """The report's console: the terminal's width (80 through a pipe), or unbounded with ``--wide``."""
    return Console(width=WIDE, **kwargs) if wide else Console(**kwargs)
