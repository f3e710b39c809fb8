"""Console report of ``explain`` (rich). Readable without colour; colour only marks meaning."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from yolodbg.explain import Explanation
from yolodbg.logged import RTOL

REASON_STYLE = "yellow"
WARN_STYLE = "bold yellow"


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.{digits}f}"


def level_label(level: int, stride: float) -> str:
    """``P3/8`` for a stride that is a power of two (the usual pyramid naming), else ``L0/s``."""
    p = math.log2(stride) if stride > 0 else 0.5
    name = f"P{int(p)}" if p == int(p) else f"L{level}"
    return f"{name}/{stride:g}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def header(ex: Explanation) -> Text:
    b, t = ex.bundle, ex.targets
    h, w = t.input_size
    out = Text()
    out.append("yolodbg explain", style="bold")
    out.append(f" · recipe {ex.recipe.spec()} — {ex.recipe.reproduces}\n")
    out.append(f"bundle {b.source} · {b.batch_size} images · input {w}×{h} · ground truth {t.source}")
    if t.letterbox_mode is not None:  # images without scale/pad: say whose letterbox mapped their GT
        n = len(t.letterbox_applied)
        out.append(f" · {t.letterbox_mode} letterbox ({t.letterbox_from}) for {n} image{'s' * (n != 1)}")
    return out


def summary(ex: Explanation) -> Table:
    bd, res = ex.breakdown, ex.breakdown.result
    total = bd.total
    table = Table(title="Summary", title_justify="left", show_edge=False, box=None, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("share", justify="right")
    table.add_column("from GTs", justify="right")
    table.add_column("background", justify="right")
    if math.isclose(res.objective, total * res.batch_size, rel_tol=1e-5):
        how = f"total × batch {res.batch_size}"
    else:  # recipes whose objective is not total × batch (yolov1: the sum of the terms)
        how = "= total" if math.isclose(res.objective, total, rel_tol=1e-5) else ""
    table.add_row("objective", _fmt(res.objective), "", "", how)
    table.add_row(Text("total", style="bold"), Text(_fmt(total), style="bold"), "100%", "", "")
    for name, value in res.terms.items():
        gts = sum(g.terms[name] for g in bd.gts)
        table.add_row(
            f"  {name}",
            _fmt(value),
            _pct(value / total) if total else "—",
            _fmt(gts),
            _fmt(bd.background[name]),
        )
    for name, value in res.extra_terms.items():  # not logged by the framework (e.g. the o2m branch)
        gts = sum(g.terms[name] for g in bd.gts)
        table.add_row(
            Text(f"  {name}", style="dim"),
            Text(_fmt(value), style="dim"),
            "",
            _fmt(gts),
            _fmt(bd.background[name]),
        )
    return table


def logged_table(ex: Explanation) -> Table | None:
    """The trainer's logged loss items beside the replayed terms (bundles that recorded them)."""
    if ex.logged is None:
        return None
    cmp = ex.logged
    title = "Replay vs logged" + ("" if cmp.checked else " (variant recipe: not checked)")
    table = Table(title=title, title_justify="left", show_edge=False, box=None, pad_edge=False)
    for name, justify in (
        ("logged item", "left"),
        ("logged", "right"),
        ("replay", "right"),
        ("rel diff", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in cmp.rows:
        if r.term is None:
            table.add_row(r.name, _fmt(r.logged), "—", "—", Text("no such term", style="dim"))
            continue
        mark = Text("ok", style="green") if r.agrees else Text(f"differs > {RTOL:g}", style="bold red")
        table.add_row(f"{r.name} → {r.term}", _fmt(r.logged), _fmt(r.replay), f"{r.rel_diff:.1e}", mark)
    return table


def counts(ex: Explanation) -> Text:
    bd = ex.breakdown
    n_gt = len(bd.gts)
    orphans = [g for g in bd.gts if g.num_pos == 0]
    zero_w = sum(1 for g in bd.gts if g.num_pos and g.num_zero_weight == g.num_pos)
    text = Text()
    text.append(f"{n_gt} GTs")
    if ex.targets.ignored:
        text.append(
            f" (+{len(ex.targets.ignored)} ignored: "
            + ", ".join(sorted({i.reason for i in ex.targets.ignored}))
            + ")"
        )
    text.append(f" · {bd.num_pos} positive anchors")
    if n_gt:
        text.append(f" · {bd.num_pos / n_gt:.1f} per GT")
    text.append(" · GTs with no positive: ")
    text.append(str(len(orphans)), style="bold red" if orphans else "")
    if zero_w:
        text.append(f" · GTs whose positives all have zero weight: {zero_w}", style=REASON_STYLE)
    for note in ex.breakdown.result.notes:
        text.append(f"\n{note}", style="dim")
    return text


def gt_table(ex: Explanation, limit: int, image: int | None = None) -> Table:
    bd = ex.breakdown
    names = list(bd.result.terms)
    rows = [g for g in bd.gts if image is None or g.image_index == image]
    rows.sort(key=lambda g: -g.total)
    shown = rows[:limit]
    title = f"Ground-truth boxes by contribution ({len(shown)} of {len(rows)})"
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for col, just in (
        ("image", "left"),
        ("gt", "right"),
        ("ann", "right"),
        ("cls", "right"),
        ("w×h px", "right"),
        ("pos", "right"),
        ("IoU", "right"),
        ("align", "right"),
    ):
        table.add_column(col, justify=just, no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    one2one = any("o2o_anchor" in g.details for g in shown)
    if one2one:
        table.add_column("o2o match", no_wrap=True)
    table.add_column("why", overflow="fold", ratio=1)
    images = {i.index: i for i in ex.bundle.images}
    for g in shown:
        w, h = g.size
        why = Text()
        if g.reason is not None:
            why.append(g.reason.code, style=REASON_STYLE)
            why.append(f": {g.reason.detail}")
        neighbours = 0
        for flag, n in g.flags.items():
            if flag.startswith("offset_"):  # YOLOv5: which cell each positive sits in (all in the JSON)
                neighbours += 0 if flag == "offset_centre" else n
                continue
            why.append(f"{' · ' if len(why) else ''}{n} {flag}", style="dim")
        if neighbours:
            why.append(f"{' · ' if len(why) else ''}{neighbours} from neighbour cells", style="dim")
        table.add_row(
            images[g.image_index].label if g.image_index in images else str(g.image_index),
            str(g.gt_index),
            "" if g.ann_id is None else str(g.ann_id),
            str(g.cls) if g.category_id is None else f"{g.cls} ({g.category_id})",
            f"{w:.0f}×{h:.0f}",
            Text(str(g.num_pos), style="bold red" if g.num_pos == 0 else ""),
            _fmt(g.mean_iou, 2),
            _fmt(g.mean_align, 3),
            *(_fmt(g.terms[n]) for n in names),
            _pct(g.share),
            *([_o2o_cell(g.details)] if one2one else []),
            why,
        )
    return table


def _o2o_cell(details: dict) -> Text:
    """The one-to-one anchor of a GT, ``+`` when it is also one of its one-to-many positives."""
    a = details.get("o2o_anchor")
    if a is None:
        return Text("none", style="bold red")
    mark = " +" if details.get("o2o_in_o2m") else " (not o2m)"
    return Text(f"{level_label(a['level'], a['stride'])} {a['cell'][0]},{a['cell'][1]}{mark}")


def negatives_table(ex: Explanation, image: int | None = None) -> Table:
    bd = ex.breakdown
    names = list(bd.result.terms)
    rows = [n for n in bd.negatives if image is None or n.image_index == image]
    table = Table(
        title=f"Background anchors by contribution (top {len(rows)})",
        title_justify="left",
        show_edge=False,
        header_style="bold",
    )
    for col in ("image", "level", "cell", "class", "score", "best IoU", "GT"):
        table.add_column(col, justify="right", no_wrap=True)
    for name in names:
        if any(n.terms.get(name) for n in rows):
            table.add_column(name, justify="right", no_wrap=True)
    table.add_column("hint", no_wrap=True)
    shown_terms = [name for name in names if any(n.terms.get(name) for n in rows)]
    local = ex.targets.local_index().tolist()
    images = {i.index: i for i in ex.bundle.images}
    for n in rows:
        a = n.anchor
        table.add_row(
            images[n.image_index].label if n.image_index in images else str(n.image_index),
            level_label(a["level"], a["stride"]),
            f"{a['cell'][0]},{a['cell'][1]}" + (f" a{a['slot']}" if a["slot"] else ""),
            str(n.pred_class),
            f"{n.score:.3f}",
            f"{n.best_iou:.2f}",
            "" if n.best_gt is None else str(local[n.best_gt]),
            *(_fmt(n.terms.get(name, 0.0)) for name in shown_terms),
            Text(n.hint, style=REASON_STYLE if n.hint else ""),
        )
    return table


def warnings_block(ex: Explanation) -> Text | None:
    items = list(ex.breakdown.result.warnings)
    if not items and not ex.breakdown.violations:
        return None
    text = Text()
    for w in items:
        text.append("warning: ", style=WARN_STYLE)
        text.append(w + "\n")
    for v in ex.breakdown.violations:
        text.append("CONSERVATION VIOLATED: ", style="bold red")
        text.append(v + "\n")
    return text


def render_explain(console: Console, ex: Explanation, top: int, image: int | None = None) -> None:
    parts = [header(ex), Text(""), summary(ex), Text("")]
    logged = logged_table(ex)
    if logged is not None:
        parts += [logged, Text("")]
    parts += [counts(ex), Text(""), gt_table(ex, top, image)]
    if ex.breakdown.negatives:
        parts += [Text(""), negatives_table(ex, image)]
    w = warnings_block(ex)
    if w is not None:
        parts += [Text(""), w]
    console.print(Group(*parts))
