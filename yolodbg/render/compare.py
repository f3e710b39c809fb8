"""``compare`` reports: rich console tables (the ``yolodbg.compare/1`` document is built in
:mod:`yolodbg.documents.compare`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.text import Text

from yolodbg.compare import AssignmentDiff, Comparison, GtChange, TermDelta
from yolodbg.render import fit
from yolodbg.render.console import WARN_STYLE
from yolodbg.render.fit import numbers


def letter(i: int) -> str:
    return chr(65 + i) if i < 26 else f"#{i}"


def _deltas(values: list[float | None]) -> list[Text]:
    """A column of signed differences in one notation; no change is a dim ``0``."""
    return [Text(s, style="dim" if s == "0" else "") for s in numbers(values, signed=True)]


def _rel(d: TermDelta) -> str:
    if d.rel is None:
        return "—" if d.abs else ""
    return f"{100 * d.rel:+.1f}%"


def header(cmp: Comparison, width: int) -> Group:
    """What is compared: one line per run, the baseline first; long parts on their own lines."""
    first = cmp.columns[0]
    ex = first.explanation
    if cmp.mode == "recipes":
        what = f"{len(cmp.columns)} recipes on {first.bundle.source} ({first.bundle.batch_size} images)"
    else:
        what = f"{len(cmp.columns)} bundles under recipe {first.recipe.spec()}"
    head = Text("yolodbg compare", style="bold")
    rest = fit.lines([what, f"ground truth {ex.targets.source}"], width - len(head.plain) - 3)
    head.append(f" · {rest[0]}")
    out: list[Any] = [head, *(Text(f"  {line.strip()}") for line in rest[1:])]
    for i, c in enumerate(cmp.columns):
        what = c.recipe.spec() if cmp.mode == "recipes" else c.bundle.source
        extra = f" ({what})" if what != c.label else ""
        row = Text(f"  {letter(i)}  ", style="bold")
        row.append(f"{c.label}{extra}" + ("  = baseline" if i == 0 else ""))
        out.append(row)
    return Group(*out)


def terms_grid(cmp: Comparison) -> fit.Grid:
    """Each term under every run; per run after the baseline its value, Δ and Δ % (Δ % goes first
    when the table is too wide)."""
    names = ["objective", "total", *cmp.terms, *cmp.extra_terms]
    cols = [fit.Col("", justify="left", key=True), fit.Col("A", key=True)]
    for i in range(1, len(cmp.columns)):
        x = letter(i)
        cols += [fit.Col(x), fit.Col(f"Δ {x}"), fit.Col(f"% {x}", drop=1)]
    grid = fit.Grid("Loss terms (Δ against A)", cols)
    grid.cols[0].cells = [
        Text(
            n if n in ("objective", "total") else f"  {n}",
            style="dim" if n in cmp.extra_terms and n not in cmp.terms else ("bold" if n == "total" else ""),
        )
        for n in names
    ]
    grid.cols[1].cells = list(numbers([cmp.deltas[0][n].value for n in names]))
    for i in range(1, len(cmp.columns)):
        d = [cmp.deltas[i][n] for n in names]
        value, delta, rel = grid.cols[3 * i - 1 : 3 * i + 2]
        value.cells = list(numbers([x.value for x in d]))
        delta.cells = _deltas([x.abs for x in d])
        rel.cells = [_rel(x) for x in d]
    return grid


def _gt_cells(g: GtChange) -> list[str]:
    x1, y1, x2, y2 = g.box_xyxy
    return [g.image, g.ident, g.class_label or str(g.cls), f"{x2 - x1:.0f}×{y2 - y1:.0f}"]


def _gt_columns() -> list[fit.Col]:
    """image and GT always; the class, then the box size are left out first when space is short."""
    return [
        fit.Col("image", justify="left", key=True),
        fit.Col("gt", key=True),
        fit.Col("class", justify="left", drop=2),
        fit.Col("w×h px", drop=3),
    ]


def _names(items: list[GtChange], n: int = 8) -> str:
    names = [f"{g.image}/{g.ident}" for g in items[:n]]
    return ", ".join(names) + (f" and {len(items) - n} more" if len(items) > n else "")


def _assignment_head(cmp: Comparison, a: AssignmentDiff) -> list[Text]:
    x = letter(a.column)
    head = Text(f"Assignment {x} vs A: ", style="bold")
    if a.unchanged:
        if a.same_params:
            head.append("unchanged")
            return [head, Text("  the difference is purely the loss (same assigner parameters)")]
        if a.anchors_comparable:
            head.append("the same positives on this batch")
            return [head, Text("  the difference here is the loss")]
        head.append("the same number of positives per GT")
        return [head]
    lost, new = (
        ("lost", "newly assigned") if cmp.mode == "bundles" else ("became orphans", "stopped being orphans")
    )
    if a.anchors_comparable:
        head.append(f"{a.added} positives added, {a.removed} removed, {a.switched} switched GT")
    else:
        head.append(f"{len(a.pos_changed)} GTs with another positive count")
    gts = Text("  GTs: ")
    if a.anchors_comparable:
        gts.append(f"{len(a.pos_changed)} with another positive count, ")
    gts.append(f"{len(a.became_orphans)} {lost}", style="bold red" if a.became_orphans else "")
    gts.append(f", {len(a.stopped_orphans)} {new}")
    out = [head, gts]
    if a.became_orphans:
        out.append(Text(f"  {lost} (no positive in {x}): {_names(a.became_orphans)}"))
    if a.stopped_orphans:
        out.append(Text(f"  {new} (no positive in A): {_names(a.stopped_orphans)}"))
    return out


def assignment_block(
    cmp: Comparison, a: AssignmentDiff, top: int, width: int, wide: bool = False
) -> list[Any]:
    out: list[Any] = list(_assignment_head(cmp, a))
    if a.unchanged:
        return out
    x = letter(a.column)
    if a.pos_changed and top:
        rows = sorted(a.pos_changed, key=lambda r: (-abs(r[2] - r[1]), r[0].image, r[0].ident))[:top]
        grid = fit.Grid(None, [*_gt_columns(), fit.Col("pos A"), fit.Col(f"pos {x}"), fit.Col("Δ")])
        for g, n0, n1 in rows:
            grid.row(
                *_gt_cells(g), str(n0), Text(str(n1), style="bold red" if n1 == 0 else ""), f"{n1 - n0:+d}"
            )
        out += grid.render(width, wide)
    for s in a.switches[:5]:
        an = s.anchor
        out.append(
            Text(
                f"  anchor {s.image} L{an['level']} cell {an['cell'][0]},{an['cell'][1]}: {s.before} → {s.after}"
            )
        )
    if a.switched > 5:
        out.append(Text(f"  and {a.switched - 5} more anchors switched GT", style="dim"))
    return out


def gt_grid(cmp: Comparison, top: int) -> fit.Grid:
    """The GTs whose contribution changed most: positives per run (left out first when space is
    short), the baseline's contribution and each run's Δ."""
    shown = cmp.gts[:top]
    n = len(cmp.columns)
    cols = [
        *_gt_columns(),
        *(fit.Col(f"pos {letter(i)}", drop=1) for i in range(n)),
        fit.Col("A"),
        *(fit.Col(f"Δ {letter(i)}") for i in range(1, n)),
    ]
    grid = fit.Grid(f"GTs by change in contribution ({len(shown)} of {len(cmp.gts)})", cols)
    totals = numbers([g.totals[0] for g in shown])
    deltas = [_deltas([g.delta[i] for g in shown]) for i in range(1, n)]
    for k, g in enumerate(shown):
        pos = [
            Text("—") if p is None else Text(str(p), style="bold red" if p == 0 else "") for p in g.num_pos
        ]
        grid.row(*_gt_cells(g), *pos, totals[k], *(d[k] for d in deltas))
    return grid


def hints_block(cmp: Comparison) -> list[Any]:
    """Each swapped function's size change on one line, the gain that restores it indented below."""
    out: list[Any] = [
        Text("Magnitude (gain that keeps the term's size after swapping its function)", style="bold")
    ]
    for h in cmp.hints:
        base, value = numbers([h.base_value, h.value])
        t = Text(f"  {letter(h.column)}  {h.term}: {h.base_form} → {h.form}: {base} → {value}")
        if h.value and h.base_value:
            t.append(f" (×{h.value / h.base_value:.4g})")
        out.append(t)
        if h.suggested is not None:
            s = Text("     ")
            s.append(f"{h.gain_key}={h.suggested:.4g}", style="bold")
            s.append(f" (now {h.gain:g}) restores the {h.base_form} magnitude on these inputs")
            out.append(s)
    return out


def why_block(cmp: Comparison, width: int, wide: bool = False) -> list[Any]:
    """What differs between the runs' settings: a table when it fits, else one aspect per block."""
    grid = fit.Grid(
        "Why the numbers differ",
        [fit.Col("", justify="left"), *(fit.Col(letter(i), justify="left") for i in range(len(cmp.columns)))],
    )
    for aspect, values in cmp.why:
        grid.row(aspect, *values)
    if wide or fit.table_width(grid.cols) <= width:
        return grid.render(width, wide)
    out: list[Any] = [Text("Why the numbers differ", style="bold")]
    for aspect, values in cmp.why:
        out.append(Text(f"  {aspect}", style="bold"))
        out += [Text(f"    {letter(i)}  {v}") for i, v in enumerate(values)]
    return out


def render_compare(console: Console, cmp: Comparison, top: int, wide: bool = False) -> None:
    width = console.width
    parts: list[Any] = [header(cmp, width), Text(""), *terms_grid(cmp).render(width, wide), Text("")]
    for a in cmp.assignment:  # (cmp.notes say the same for the JSON)
        parts += assignment_block(cmp, a, top, width, wide)
    if top:
        parts += [Text(""), *gt_grid(cmp, top).render(width, wide)]
    if cmp.hints:
        parts += [Text(""), *hints_block(cmp)]
    why = dict(cmp.why)
    if len({c.recipe.name for c in cmp.columns}) > 1 or len(set(why["gains"])) > 1:
        parts += [Text(""), *why_block(cmp, width, wide)]
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
