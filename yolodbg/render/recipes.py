"""``yolodbg recipes``: the recipe list and one recipe's parameters, laid out for the console's width.

A table when every column fits; otherwise one block per recipe (or parameter) with its long text
(what it reproduces, what a parameter means) on its own indented lines, wrapped between words,
so no name, value or choice list is cut. Takes plain rows: rendering needs neither torch nor the
recipes themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Group
from rich.text import Text

from yolodbg.render import fit

DETAIL = " " * 6


def _wrapped(text: str, width: int, indent: str = DETAIL) -> list[Text]:
    """``text`` on indented lines of at most ``width``, broken between words only; an interval such
    as ``[1, 2147483647]`` stays on one line."""
    words = re.findall(r"\[[^\]]*\]\S*|\S+", text)
    return [Text(indent + line.lstrip()) for line in fit.lines(words, max(width - len(indent), 20), "", " ")]


def recipe_list(rows: Sequence[tuple[str, str, str, str, str]], width: int, wide: bool = False) -> Group:
    """``rows``: (recipe, aliases, heads, terms, reproduces)."""
    heads = ("recipe", "aliases", "head", "terms", "reproduces")
    grid = fit.Grid(None, [fit.Col(h, justify="left") for h in heads])
    for row in rows:
        grid.row(*row)
    if wide or fit.table_width(grid.cols) <= width:
        return Group(*grid.render(width, wide), Text("Parameters of one recipe: yolodbg recipes NAME"))
    out: list[Text] = []
    for name, aliases, head, terms, reproduces in rows:
        line = Text(name, style="bold")
        line.append(f" (also {aliases})" if aliases else "")
        line.append(f" · head {head} · terms {terms}")
        out += [line, *_wrapped(reproduces, width)]
    out.append(Text("Parameters of one recipe: yolodbg recipes NAME"))
    return Group(*out)


def recipe_params(
    title: str, reproduces: str, rows: Sequence[tuple[str, str, str]], width: int, wide: bool = False
) -> Group:
    """``rows``: (key, default, meaning) of one recipe's parameters."""
    grid = fit.Grid(None, [fit.Col(h, justify="left") for h in ("key", "default", "meaning")])
    for row in rows:
        grid.row(*row)
    if wide or fit.table_width(grid.cols) <= width:
        return Group(Text(title, style="bold"), *_wrapped(reproduces, width, "  "), *grid.render(width, wide))
    out: list[Text] = [Text(title, style="bold"), *_wrapped(reproduces, width, "  ")]
    out += [Text("key = default", style="dim"), Text(f"{DETAIL}meaning", style="dim")]
    for key, default, meaning in rows:
        line = Text("  ")
        line.append(key, style="bold")
        line.append(f" = {default}")
        out += [line, *_wrapped(meaning, width)]
    return Group(*out)
