"""Console report of ``explain`` (rich). Readable without colour; colour only marks meaning.

Every table fits the console by leaving out its least important columns (named under it), never
by cutting a value (:mod:`yolodbg.render.fit`, the layout of every report); ``wide`` shows every column. What does not
fit a cell (a reason's sentence, the winner of a conflict, YOLOX's dynamic-k arithmetic) goes on
its own indented line under the table. A class is written the one way :mod:`yolodbg.class_names`
decides (``square (2)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from yolodbg.breakdown import GtRow, Negative
from yolodbg.explain import Explanation
from yolodbg.logged import RTOL
from yolodbg.render.fit import NOTE_STYLE, Col, Grid, note_lines, number_format, show

REASON_STYLE = "yellow"
WARN_STYLE = "bold yellow"
INDENT = "  "


def _fmt(v: float | None, digits: int = 4) -> str:
    """One number on its own (not in a column: a column's numbers share :func:`number_format`)."""
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


@dataclass(frozen=True)
class AlignColumn:
    """What a recipe's per-positive ``align`` number is: the GT table's header and its legend line."""

    header: str
    legend: str


# the assigner number each recipe family records as a positive's ``align`` (None: nothing beyond IoU)
ALIGN_COLUMNS: dict[str, AlignColumn | None] = {
    "yolov8": AlignColumn(
        "TAL align", "TAL align = mean alignment metric s^α·IoU^β of its positives (higher is better)"
    ),
    "yolo26": AlignColumn(
        "TAL align", "TAL align = mean alignment metric s^α·IoU^β of its positives (higher is better)"
    ),
    "yolov5": AlignColumn(
        "anchor ratio",
        "anchor ratio = mean YOLOv5 shape ratio max(w/aw, aw/w, h/ah, ah/h) of its positives "
        "(lower is better; a match needs it below anchor_t)",
    ),
    "yolox": AlignColumn(
        "SimOTA cost",
        "SimOTA cost = mean assignment cost of its positives (lower is better; 1e5 = outside prior)",
    ),
    "yolov1": None,  # its align is the responsible predictor's IoU: the IoU column already shows it
}
GENERIC_ALIGN = AlignColumn("align", "align = mean assigner metric of its positives")


def align_column(ex: Explanation) -> AlignColumn | None:
    """The align column of the recipe (or of the recipe it derives from); a generic one otherwise."""
    for klass in type(ex.recipe).__mro__:
        name = klass.__dict__.get("name")
        if isinstance(name, str) and name in ALIGN_COLUMNS:
            return ALIGN_COLUMNS[name]
    return GENERIC_ALIGN


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
    if ex.class_names.source:
        out.append(f"\nclass names from {ex.class_names.source}")
        nc = int(ex.result.pred_scores.shape[-1])
        unnamed = [c for c in range(nc) if ex.class_names.name_of(c) is None]
        if unnamed:
            listed = ", ".join(map(str, unnamed[:8])) + (", ..." if len(unnamed) > 8 else "")
            out.append(f" (none for class {listed} of {nc}: written as the id alone)", style=WARN_STYLE)
    return out


def summary_columns(ex: Explanation) -> list[Col]:
    bd, res = ex.breakdown, ex.breakdown.result
    total = bd.total
    if math.isclose(res.objective, total * res.batch_size, rel_tol=1e-5):
        how = f"total × batch {res.batch_size}"
    else:  # recipes whose objective is not total × batch (yolov1: the sum of the terms)
        how = "= total" if math.isclose(res.objective, total, rel_tol=1e-5) else ""
    rows: list[tuple[Text | str, float | None, str, float | None, float | str | None, str]] = [
        ("objective", res.objective, "", None, how, ""),
        (Text("total", style="bold"), total, "100%", None, None, "bold"),
    ]
    for name, value in res.terms.items():
        gts = math.fsum(g.terms[name] for g in bd.gts)
        rows.append((f"  {name}", value, _pct(value / total) if total else "—", gts, bd.background[name], ""))
    for name, value in res.extra_terms.items():  # not logged by the framework (e.g. the o2m branch)
        gts = math.fsum(g.terms[name] for g in bd.gts)
        rows.append((Text(f"  {name}", style="dim"), value, "", gts, bd.background[name], "dim"))
    values = number_format(r[1] for r in rows)
    parts = number_format([r[3] for r in rows] + [r[4] for r in rows if not isinstance(r[4], str)])
    return [
        Col("", [r[0] for r in rows], "left"),
        Col("value", [Text(values(r[1]), style=r[5]) for r in rows]),
        Col("share", [r[2] for r in rows]),
        Col("from GTs", ["" if r[3] is None else parts(r[3]) for r in rows]),
        Col(
            "background",
            [r[4] if isinstance(r[4], str) else "" if r[4] is None else parts(r[4]) for r in rows],
        ),
    ]


def logged_grid(ex: Explanation) -> Grid | None:
    """The trainer's logged loss items beside the replayed terms (bundles that recorded them)."""
    if ex.logged is None:
        return None
    cmp = ex.logged
    title = "Replay vs logged" + ("" if cmp.checked else " (variant recipe: not checked)")
    fmt = number_format([r.logged for r in cmp.rows] + [r.replay for r in cmp.rows if r.term is not None])
    grid = Grid(
        title,
        [
            Col("logged item", justify="left", key=True),
            Col("logged"),
            Col("replay"),
            Col("rel diff"),
            Col("", justify="left"),
        ],
    )
    for r in cmp.rows:
        if r.term is None:
            grid.row(r.name, fmt(r.logged), "—", "—", Text("no such term", style="dim"))
            continue
        mark = Text("ok", style="green") if r.agrees else Text(f"differs > {RTOL:g}", style="bold red")
        grid.row(f"{r.name} → {r.term}", fmt(r.logged), fmt(r.replay), f"{r.rel_diff:.1e}", mark)
    return grid


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


def _image_label(ex: Explanation, index: int) -> str:
    images = ex.bundle.images
    return images[index].label if index < len(images) else str(index)


def image_rows(ex: Explanation, limit: int, focus: int | None = None) -> list:
    """The ``limit`` images that cost the most (the focused one always among them), most costly first."""
    rows = sorted(ex.breakdown.images, key=lambda r: -r.total)
    shown = rows[: max(limit, 1)]
    if focus is not None and all(r.index != focus for r in shown):
        shown.append(ex.breakdown.images[focus])
    return shown


def images_columns(ex: Explanation, rows: list, focus: int | None = None) -> list[Col]:
    """Each image's loss (the logged terms summed) and its share of the batch total; ``>`` marks the focus."""
    bd = ex.breakdown
    total = bd.total
    names = list(bd.result.terms)
    loss = number_format([r.total for r in rows] + [math.fsum(r.background[n] for n in names) for r in rows])
    cols = [
        Col(
            "image", [("> " if r.index == focus else "  ") + _image_label(ex, r.index) for r in rows], "left"
        ),
        Col("GTs", [str(r.num_gt) for r in rows]),
        Col("positives", [str(r.num_pos) for r in rows], drop=2),
        Col("loss", [loss(r.total) for r in rows]),
        Col("share", [_pct(r.total / total) if total else "—" for r in rows]),
        Col("background", [loss(math.fsum(r.background[n] for n in names)) for r in rows], drop=1),
    ]
    return cols


def focus_line(ex: Explanation, focus: int) -> Text:
    """``focus: image 4 (val_003.jpg) · loss 0.0123, 2.3% of the batch · 0 GTs · 0 positive anchors``."""
    row = ex.breakdown.images[focus]
    info = ex.bundle.images[focus] if focus < len(ex.bundle.images) else None
    total = ex.breakdown.total
    text = Text("focus: ", style="bold")
    text.append(f"image {_image_label(ex, focus)}")
    if info is not None and info.file_name and info.file_name != info.label:
        text.append(f" ({info.file_name})")
    share = f", {_pct(row.total / total)} of the batch" if total else ""
    bg = math.fsum(row.background[n] for n in ex.breakdown.result.terms)
    text.append(f" · loss {_fmt(row.total)}{share} · {row.num_gt} GTs · {row.num_pos} positive anchors")
    if row.total > 0:
        text.append(f" · background {_pct(bg / row.total)} of it")
    return text


def _why_code(g: GtRow) -> Text:
    return Text(g.reason.code, style=REASON_STYLE) if g.reason is not None else Text("")


def _why_detail(g: GtRow) -> Text | None:
    """A GT's reason sentence and its positives' flags (``2 outside_box``), or None when it has neither."""
    text = Text()
    if g.reason is not None:
        text.append(g.reason.code, style=REASON_STYLE)
        text.append(f": {g.reason.detail}")
    neighbours = 0
    for flag, n in g.flags.items():
        if flag.startswith("offset_"):  # YOLOv5: which cell each positive sits in (all in the JSON)
            neighbours += 0 if flag == "offset_centre" else n
            continue
        text.append(f"{' · ' if len(text) else ''}{n} {flag}", style="dim")
    if neighbours:
        text.append(f"{' · ' if len(text) else ''}{neighbours} from neighbour cells", style="dim")
    return text if len(text) else None


def _gt_key(ex: Explanation, g: GtRow) -> str:
    return f"{_image_label(ex, g.image_index)}/{g.gt_index}"


def gt_rows(ex: Explanation, limit: int, image: int | None = None) -> tuple[list[GtRow], int]:
    """The GTs to list (``image``'s own when focused), most costly first, and how many there are."""
    rows = [g for g in ex.breakdown.gts if image is None or g.image_index == image]
    rows.sort(key=lambda g: -g.total)
    return rows[:limit], len(rows)


def gt_columns(ex: Explanation, shown: list[GtRow]) -> list[Col]:
    """The GT table's columns, most important first in rank (0 is never dropped)."""
    names = list(ex.breakdown.result.terms)
    label = ex.class_names.label
    cols = [
        Col("image", [_image_label(ex, g.image_index) for g in shown], "left"),
        Col("gt", [str(g.gt_index) for g in shown]),
        Col("ann", ["" if g.ann_id is None else str(g.ann_id) for g in shown], drop=6),
        Col("class", [label(g.cls) for g in shown], "left", drop=1),
        Col("w×h px", [f"{g.size[0]:.0f}×{g.size[1]:.0f}" for g in shown], drop=5),
        Col("pos", [Text(str(g.num_pos), style="bold red" if g.num_pos == 0 else "") for g in shown], drop=2),
        Col("IoU", ["—" if g.mean_iou is None else f"{g.mean_iou:.2f}" for g in shown], drop=3),
    ]
    align = align_column(ex)
    if align is not None:
        fmt = number_format((g.mean_align for g in shown), 3)
        cols.append(Col(align.header, [fmt(g.mean_align) for g in shown], drop=4))
    for name in names:
        fmt = number_format(g.terms[name] for g in shown)
        all_zero = all(g.terms[name] == 0 for g in ex.breakdown.gts)  # a background-only or switched-off term
        cols.append(Col(name, [fmt(g.terms[name]) for g in shown], drop=5 if all_zero else 1))
    cols.append(Col("share", [_pct(g.share) for g in shown], drop=1))
    if any("o2o_anchor" in g.details for g in shown):
        cols.append(Col("o2o match", [_o2o_cell(g.details) for g in shown], "left", drop=4))
    if any(g.reason is not None for g in shown):
        cols.append(Col("why", [_why_code(g) for g in shown], "left", drop=2))
    return cols


def _hanging(console: Console, key: str, detail: Text) -> Text:
    """``  key detail`` with the detail wrapped under itself (a hanging indent), no trailing blanks."""
    lead = len(INDENT) + len(key) + 1
    out = Text()
    for i, line in enumerate(detail.wrap(console, max(console.width - lead, 20))):
        line.rstrip()
        out.append("\n" if i else "")
        out.append(INDENT + (key if i == 0 else " " * len(key)) + " ")
        out.append_text(line)
    return out


def gt_legend(console: Console, ex: Explanation, shown: list[GtRow], kept: list[Col]) -> list[Text]:
    """Under the GT table: what the recipe's columns mean, then one indented line per GT with a reason or flags."""
    out: list[Text] = []
    align = align_column(ex)
    headers = {c.header for c in kept}
    meanings = []
    if "IoU" in headers:
        meanings.append("IoU = mean IoU of its positives' predicted boxes")
    if align is not None and align.header in headers:
        meanings.append(align.legend)
    if meanings:
        out += [
            Text(line, style=NOTE_STYLE) for line in note_lines("; ".join(meanings).split(" "), console.width)
        ]
    details = [(_gt_key(ex, g), d) for g in shown if (d := _why_detail(g)) is not None]
    if details:
        out.append(Text("why (image/gt):"))
        key_width = max(len(k) for k, _ in details)
        out += [_hanging(console, k.ljust(key_width), d) for k, d in details]
    return out


def _o2o_cell(details: dict) -> Text:
    """The one-to-one anchor of a GT, ``+`` when it is also one of its one-to-many positives."""
    a = details.get("o2o_anchor")
    if a is None:
        return Text("none", style="bold red")
    mark = " +" if details.get("o2o_in_o2m") else " (not o2m)"
    return Text(f"{level_label(a['level'], a['stride'])} {a['cell'][0]},{a['cell'][1]}{mark}")


def negatives_columns(ex: Explanation, rows: list[Negative]) -> list[Col]:
    """The background table's columns; a term column only when one of the rows has that term."""
    names = [name for name in ex.breakdown.result.terms if any(n.terms.get(name) for n in rows)]
    local = ex.targets.local_index().tolist()
    label = ex.class_names.label
    cols = [
        Col("image", [_image_label(ex, n.image_index) for n in rows], "left"),
        Col("level", [level_label(n.anchor["level"], n.anchor["stride"]) for n in rows], drop=2),
        Col(
            "cell",
            [
                f"{n.anchor['cell'][0]},{n.anchor['cell'][1]}"
                + (f" a{n.anchor['slot']}" if n.anchor["slot"] else "")
                for n in rows
            ],
            drop=2,
        ),
        Col("pred class", [label(n.pred_class) for n in rows], "left", drop=1),
        Col("score", [f"{n.score:.3f}" for n in rows], drop=1),
        Col("best IoU", [f"{n.best_iou:.2f}" for n in rows], drop=3),
        Col("best GT", ["" if n.best_gt is None else str(local[n.best_gt]) for n in rows], drop=3),
    ]
    for name in names:
        fmt = number_format(n.terms.get(name, 0.0) for n in rows)
        cols.append(Col(name, [fmt(n.terms.get(name, 0.0)) for n in rows]))
    if any(n.hint for n in rows):
        cols.append(
            Col("hint", [Text(n.hint, style=REASON_STYLE if n.hint else "") for n in rows], "left", drop=1)
        )
    return cols


def render_explain(
    console: Console, ex: Explanation, top: int, image: int | None = None, *, wide: bool = False
) -> None:
    """The whole report: header, summary, logged check, counts, images, GTs, background, warnings."""
    console.print(header(ex))
    console.print()
    show(console, Grid("Summary", summary_columns(ex)), wide)
    logged = logged_grid(ex)
    if logged is not None:
        console.print()
        show(console, logged, wide)
    console.print()
    console.print(counts(ex))
    console.print()
    if image is not None:
        console.print(focus_line(ex, image))
        console.print()
    images = image_rows(ex, top, image)
    n_img = len(ex.breakdown.images)
    title = f"Images by loss ({len(images)} of {n_img}; share of the batch total)"
    show(console, Grid(title, images_columns(ex, images, image)), wide)
    console.print()
    shown, n = gt_rows(ex, top, image)
    where = "" if image is None else f" of image {_image_label(ex, image)}"
    title = f"Ground-truth boxes{where} by contribution ({len(shown)} of {n})"
    if not shown:
        console.print(Text(title, style="bold"))
    else:
        kept = show(console, Grid(title, gt_columns(ex, shown)), wide)
        for part in gt_legend(console, ex, shown, kept):
            console.print(part)
    negatives = ex.breakdown.negatives
    if negatives or image is not None:
        console.print()
        title = f"Background anchors{where} by contribution (top {len(negatives)})"
        if not negatives:
            console.print(Text(title, style="bold"))
        else:
            show(console, Grid(title, negatives_columns(ex, negatives)), wide)
    w = warnings_block(ex)
    if w is not None:
        console.print()
        console.print(w, end="")


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
