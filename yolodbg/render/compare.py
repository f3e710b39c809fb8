"""``compare`` reports: rich console tables (the ``yolodbg.compare/1`` document is built in
:mod:`yolodbg.documents.compare`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from yolodbg.compare import AssignmentDiff, Comparison, GtChange, TermDelta
from yolodbg.render.console import WARN_STYLE, _fmt


def letter(i: int) -> str:
    return chr(65 + i) if i < 26 else f"#{i}"


def _delta(v: float | None) -> Text:
    if v is None:
        return Text("—")
    if v == 0:
        return Text("0", style="dim")
    return Text(("+" if v > 0 else "") + _fmt(v))


def _rel(d: TermDelta) -> str:
    if d.rel is None:
        return "—" if d.abs else ""
    return f"{100 * d.rel:+.1f}%"


def header(cmp: Comparison) -> Group:
    first = cmp.columns[0]
    t = Text()
    t.append("yolodbg compare", style="bold")
    ex = first.explanation
    if cmp.mode == "recipes":
        t.append(f" · {len(cmp.columns)} recipes on {first.bundle.source} ({first.bundle.batch_size} images)")
    else:
        t.append(f" · {len(cmp.columns)} bundles under recipe {first.recipe.spec()}")
    t.append(f" · ground truth {ex.targets.source}")
    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True, style="bold")
    table.add_column(overflow="fold")
    for i, c in enumerate(cmp.columns):
        what = c.recipe.spec() if cmp.mode == "recipes" else c.bundle.source
        extra = f" ({what})" if what != c.label else ""
        table.add_row(f"  {letter(i)}", f"{c.label}{extra}" + ("  = baseline" if i == 0 else ""))
    return Group(t, table)


def terms_table(cmp: Comparison) -> Table:
    table = Table(
        title="Loss terms (Δ against A)", title_justify="left", show_edge=False, header_style="bold"
    )
    table.add_column("", no_wrap=True)
    table.add_column("A", justify="right", no_wrap=True)
    for i in range(1, len(cmp.columns)):
        for name in (letter(i), f"Δ {letter(i)}", "%"):
            table.add_column(name, justify="right", no_wrap=True)
    for name in ("objective", "total", *cmp.terms, *cmp.extra_terms):
        dim = name in cmp.extra_terms and name not in cmp.terms
        style = "dim" if dim else ("bold" if name == "total" else "")
        cells: list[Any] = [Text(name if name in ("objective", "total") else f"  {name}", style=style)]
        cells.append(_fmt(cmp.deltas[0][name].value))
        for i in range(1, len(cmp.columns)):
            d = cmp.deltas[i][name]
            cells += [_fmt(d.value), _delta(d.abs), _rel(d)]
        table.add_row(*cells)
    return table


def _gt_cells(g: GtChange) -> list[str]:
    x1, y1, x2, y2 = g.box_xyxy
    return [g.image, g.ident, str(g.cls), f"{x2 - x1:.0f}×{y2 - y1:.0f}"]


def _gt_columns(table: Table) -> None:
    for name in ("image", "gt", "cls", "w×h px"):
        table.add_column(name, justify="right" if name != "image" else "left", no_wrap=True)


def _names(items: list[GtChange], n: int = 8) -> str:
    names = [f"{g.image}/{g.ident}" for g in items[:n]]
    return ", ".join(names) + (f", … (+{len(items) - n})" if len(items) > n else "")


def assignment_block(cmp: Comparison, a: AssignmentDiff, top: int) -> list[Any]:
    x = letter(a.column)
    head = Text(f"Assignment {x} vs A: ", style="bold")
    if a.unchanged:
        if a.same_params:
            head.append("unchanged: the difference is purely the loss (same assigner parameters)")
        elif a.anchors_comparable:
            head.append("the same positives on this batch: the difference here is the loss")
        else:
            head.append("the same number of positives per GT")
        return [head]
    lost, new = (
        ("lost", "newly assigned") if cmp.mode == "bundles" else ("became orphans", "stopped being orphans")
    )
    if a.anchors_comparable:
        head.append(f"{a.added} positives added, {a.removed} removed, {a.switched} switched GT · ")
    head.append(f"{len(a.pos_changed)} GTs with another positive count\n  GTs: ")
    head.append(f"{len(a.became_orphans)} {lost}", style="bold red" if a.became_orphans else "")
    head.append(f", {len(a.stopped_orphans)} {new}")
    out: list[Any] = [head]
    if a.became_orphans:
        out.append(Text(f"  {lost} (no positive in {x}): {_names(a.became_orphans)}"))
    if a.stopped_orphans:
        out.append(Text(f"  {new} (no positive in A): {_names(a.stopped_orphans)}"))
    if a.pos_changed and top:
        rows = sorted(a.pos_changed, key=lambda r: (-abs(r[2] - r[1]), r[0].image, r[0].ident))[:top]
        table = Table(show_edge=False, header_style="bold", title_justify="left")
        _gt_columns(table)
        for name in ("pos A", f"pos {x}", "Δ"):
            table.add_column(name, justify="right", no_wrap=True)
        for g, n0, n1 in rows:
            table.add_row(
                *_gt_cells(g), str(n0), Text(str(n1), style="bold red" if n1 == 0 else ""), f"{n1 - n0:+d}"
            )
        out.append(table)
    for s in a.switches[:5]:
        an = s.anchor
        out.append(
            Text(
                f"  anchor {s.image} L{an['level']} cell {an['cell'][0]},{an['cell'][1]}: {s.before} → {s.after}"
            )
        )
    if a.switched > 5:
        out.append(Text(f"  … {a.switched - 5} more anchors switched GT", style="dim"))
    return out


def gt_table(cmp: Comparison, top: int) -> Table:
    shown = cmp.gts[:top]
    n = len(cmp.columns)
    table = Table(
        title=f"GTs by change in contribution ({len(shown)} of {len(cmp.gts)})",
        title_justify="left",
        show_edge=False,
        header_style="bold",
    )
    _gt_columns(table)
    for i in range(n):
        table.add_column(f"pos {letter(i)}", justify="right", no_wrap=True)
    table.add_column("A", justify="right", no_wrap=True)
    for i in range(1, n):
        table.add_column(f"Δ {letter(i)}", justify="right", no_wrap=True)
    for g in shown:
        pos = [
            Text("—") if p is None else Text(str(p), style="bold red" if p == 0 else "") for p in g.num_pos
        ]
        table.add_row(*_gt_cells(g), *pos, _fmt(g.totals[0]), *(_delta(d) for d in g.delta[1:]))
    return table


def hints_block(cmp: Comparison) -> list[Any]:
    out: list[Any] = []
    for h in cmp.hints:
        t = Text(
            f"  {letter(h.column)}  {h.term}: {h.base_form} → {h.form}: {_fmt(h.base_value)} → {_fmt(h.value)}"
        )
        if h.value and h.base_value is not None:
            t.append(f" (×{h.value / h.base_value:.3g})" if h.base_value else "")
        if h.suggested is not None:
            t.append(f"; {h.gain_key}={h.suggested:.4g}", style="bold")
            t.append(f" (now {h.gain:g}) restores the {h.base_form} magnitude on these inputs")
        out.append(t)
    return [
        Text("Magnitude (gain that keeps the term's size after swapping its function)", style="bold"),
        *out,
    ]


def why_table(cmp: Comparison) -> Table:
    table = Table(title="Why the numbers differ", title_justify="left", show_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    for i in range(len(cmp.columns)):
        table.add_column(letter(i), overflow="fold")
    for aspect, values in cmp.why:
        table.add_row(aspect, *values)
    return table


def render_compare(console: Console, cmp: Comparison, top: int) -> None:
    parts: list[Any] = [header(cmp), Text(""), terms_table(cmp), Text("")]
    for a in cmp.assignment:  # (cmp.notes say the same for the JSON)
        parts += assignment_block(cmp, a, top)
    if top:
        parts += [Text(""), gt_table(cmp, top)]
    if cmp.hints:
        parts += [Text(""), *hints_block(cmp)]
    why = dict(cmp.why)
    if len({c.recipe.name for c in cmp.columns}) > 1 or len(set(why["gains"])) > 1:
        parts += [Text(""), why_table(cmp)]
    if cmp.warnings or cmp.violations:
        text = Text()
        for w in cmp.warnings:
            text.append("warning: ", style=WARN_STYLE)
            text.append(w + "\n")
        for v in cmp.violations:
            text.append("CONSERVATION VIOLATED: ", style="bold red")
            text.append(v + "\n")
        parts += [Text(""), text]
    console.print(Group(*parts))
