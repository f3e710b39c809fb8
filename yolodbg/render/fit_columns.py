"""Tables that fit the terminal by dropping whole columns, never by cutting a value.

rich shrinks a table that is wider than the console by truncating its cells (``0.…``,
``iscrowd_regi…``). A report table instead ranks its columns: when the full table does not fit,
the least important column is left out (and named under the table) until it does; every value
that is shown is shown whole. ``wide`` keeps every column whatever the width.

Numbers of one column share one notation (:func:`number_format`): fixed decimals when the
column's magnitudes allow it, else scientific for the whole column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 2  # columns are separated by two spaces (padding 1 on each side, none at the edges)
SCI_BELOW = 1e-4  # a column holding a smaller nonzero magnitude is written in scientific notation
SCI_FROM = 1e6  # ... and one holding a magnitude at least this large


@dataclass
class Column:
    """One column: its header, its cells, and how soon it is dropped (``rank`` 0: never; higher: sooner)."""

    header: str
    cells: list[str | Text] = field(default_factory=list)
    justify: str = "right"
    rank: int = 0

    def width(self) -> int:
        return max(
            [
                Text(self.header).cell_len,
                *(Text(c).cell_len if isinstance(c, str) else c.cell_len for c in self.cells),
            ]
        )


def table_width(columns: Sequence[Column]) -> int:
    return sum(c.width() for c in columns) + GAP * max(len(columns) - 1, 0)


def fit(columns: Sequence[Column], width: int, wide: bool = False) -> tuple[list[Column], list[Column]]:
    """The columns to show within ``width`` and those left out (least important first, then rightmost)."""
    kept, dropped = list(columns), []
    while not wide and table_width(kept) > width:
        candidates = [c for c in kept if c.rank > 0]
        if not candidates:
            break
        worst = max(candidates, key=lambda c: (c.rank, kept.index(c)))
        kept.remove(worst)
        dropped.append(worst)
    return kept, dropped


def build_table(columns: Sequence[Column]) -> Table:
    """A borderless rich table of ``columns`` (bold headers, no wrapping: each column is as wide as its widest cell)."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
    for c in columns:
        table.add_column(c.header, justify=c.justify, no_wrap=True, min_width=c.width())
    n = max((len(c.cells) for c in columns), default=0)
    for i in range(n):
        table.add_row(*(c.cells[i] if i < len(c.cells) else "" for c in columns))
    return table


def print_table(console: Console, columns: Sequence[Column]) -> None:
    """Print a fitted table; one wider than the console (``--wide``) is printed whole, not cropped."""
    need = table_width(columns)
    if need > console.width:
        console.print(build_table(columns), width=need, crop=False)
    else:
        console.print(build_table(columns))


def dropped_note(dropped: Sequence[Column], width: int) -> Text | None:
    """``not shown at 80 columns: ann, w×h px (--wide shows every column)``, or None."""
    if not dropped:
        return None
    names = ", ".join(c.header for c in dropped)
    return Text(f"not shown at {width} columns: {names} (--wide shows every column)", style="dim")


def number_format(values: Iterable[float | None], decimals: int = 4) -> Callable[[float | None], str]:
    """A formatter for every number of one column: one notation for all of them.

    Fixed with ``decimals`` places, more (up to 6) when the smallest nonzero magnitude needs them
    for two significant digits; scientific (``1.234e-05``) for the whole column when a magnitude is
    below 1e-4 or at least 1e6. Zero is ``0``, a missing value ``—``, non-finite ``nan``/``inf``.
    """
    mags = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    sci = bool(mags) and (min(mags) < SCI_BELOW or max(mags) >= SCI_FROM)
    places = decimals
    if mags and not sci:
        places = min(max(decimals, math.ceil(-math.log10(min(mags))) + 1 + (min(mags) < 1)), 6)

    def fmt(v: float | None) -> str:
        if v is None:
            return "—"
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        return f"{v:.3e}" if sci else f"{v:.{places}f}"

    return fmt


__all__ = ["Column", "build_table", "dropped_note", "fit", "number_format", "print_table", "table_width"]
