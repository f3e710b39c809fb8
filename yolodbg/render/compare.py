"""``compare`` reports: rich console tables and the ``yolodbg.compare/1`` JSON document."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from yolodbg.compare import AssignmentDiff, Column, Comparison, GtChange, MagnitudeHint, TermDelta
from yolodbg.render.console import WARN_STYLE, _fmt

SCHEMA = "yolodbg.compare/1"


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
    return [g.image, g.ident, g.class_label or str(g.cls), f"{x2 - x1:.0f}×{y2 - y1:.0f}"]


def _gt_columns(table: Table) -> None:
    for name in ("image", "gt", "class", "w×h px"):
        table.add_column(name, justify="right" if name not in ("image", "class") else "left", no_wrap=True)


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


# ---------------------------------------------------------------------------------------------------- JSON


def _d(d: TermDelta) -> dict[str, float | None]:
    return {"base": d.base, "value": d.value, "abs": d.abs, "rel": d.rel}


def _gt_json(g: GtChange) -> dict[str, Any]:
    image, kind, ident = g.key
    return {
        "image": image,
        "ann_id": ident if kind == "ann" else None,
        "gt_index": ident if kind == "#" else None,
        "class": g.cls,
        "box_xyxy": list(g.box_xyxy),
        "num_pos": list(g.num_pos),
        "total": list(g.totals),
        "terms": list(g.terms),
        "delta": list(g.delta),
    }


def _ref(g: GtChange) -> dict[str, Any]:
    image, kind, ident = g.key
    return {"image": image, "ann_id" if kind == "ann" else "gt_index": ident}


def _column_doc(i: int, c: Column) -> dict[str, Any]:
    """One compared run (``columns[]``): its recipe, input and numbers, as the explain document has them."""
    ex, r = c.explanation, c.recipe
    res = ex.result
    return {
        "index": i,
        "label": c.label,
        "recipe": {
            "name": r.name,
            "spec": r.spec(),
            "params": res.params,
            "reproduces": r.reproduces,
        },
        "input": {
            "bundle": c.bundle.source,
            "digest": c.bundle.digest,
            "ground_truth": ex.targets.source,
        },
        "objective": res.objective,
        "terms": dict(res.terms),
        "extra_terms": dict(res.extra_terms),
        "total": ex.breakdown.total,
        "batch_size": res.batch_size,
        "num_gt": len(ex.targets),
        "num_pos": ex.breakdown.num_pos,
        "normalizers": res.normalizers,
        "notes": res.notes,
    }


def _assignment_doc(a: AssignmentDiff) -> dict[str, Any]:
    """How a column's assignment differs from the baseline's (``assignment[]``)."""
    return {
        "column": a.column,
        "same_assigner_params": a.same_params,
        "unchanged": a.unchanged,
        "anchors_comparable": a.anchors_comparable,
        "added_positives": a.added,
        "removed_positives": a.removed,
        "switched_anchors": a.switched,
        "switch_examples": [
            {"image": s.image, **s.anchor, "before": s.before, "after": s.after} for s in a.switches
        ],
        "pos_count_changed": [{**_ref(g), "before": n0, "after": n1} for g, n0, n1 in a.pos_changed],
        "became_orphans": [_ref(g) for g in a.became_orphans],
        "stopped_orphans": [_ref(g) for g in a.stopped_orphans],
    }


def _hint_doc(h: MagnitudeHint) -> dict[str, Any]:
    """A term whose new form changed its size, and the gain that would bring it back (``magnitude_hints[]``)."""
    return {
        "column": h.column,
        "term": h.term,
        "from": h.base_form,
        "to": h.form,
        "base_value": h.base_value,
        "value": h.value,
        "gain_key": h.gain_key,
        "gain": h.gain,
        "suggested_gain": h.suggested,
    }


def compare_doc(cmp: Comparison) -> dict[str, Any]:
    from yolodbg.render.jsonout import versions

    return {
        "schema": SCHEMA,
        "mode": cmp.mode,
        "baseline": 0,
        "columns": [_column_doc(i, c) for i, c in enumerate(cmp.columns)],
        "term_names": cmp.terms,
        "extra_term_names": cmp.extra_terms,
        "deltas": [{"column": i, **{k: _d(v) for k, v in d.items()}} for i, d in enumerate(cmp.deltas)],
        "assignment": [_assignment_doc(a) for a in cmp.assignment],
        "gts": [_gt_json(g) for g in cmp.gts],
        "magnitude_hints": [_hint_doc(h) for h in cmp.hints],
        "why": {aspect: values for aspect, values in cmp.why},
        "notes": cmp.notes,
        "warnings": cmp.warnings + cmp.violations,
        "versions": versions(),
    }
