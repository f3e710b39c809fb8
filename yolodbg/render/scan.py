"""Console report of ``scan`` and ``trend`` (rich), and the scan's progress bar.

Everything renders from the JSON documents (``yolodbg.scan/1``, ``yolodbg.trend/1``), so the
console and ``--json`` never disagree. Readable without colour; colour marks problems only.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from yolodbg.class_names import ClassNames, scan_doc_names
from yolodbg.render import fit
from yolodbg.render.console import _fmt, level_label
from yolodbg.render.fit import numbers

BAD = "bold red"
WARN = "yellow"


def _pct(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _ap(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


class ImagesPerSecond(ProgressColumn):
    """Images per second over the task so far (from the ``images`` field)."""

    def render(self, task) -> Text:
        images = task.fields.get("images", 0)
        if not task.elapsed or not images:
            return Text("— img/s", style="progress.data.speed")
        return Text(f"{images / task.elapsed:.1f} img/s", style="progress.data.speed")


def progress(console: Console) -> Progress:
    """The scan's progress bar: bundles done of total, images/s, ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("bundles"),
        ImagesPerSecond(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def summary(doc: dict[str, Any], width: int, wide: bool = False) -> list[Any]:
    """The dataset in numbers; each row's detail in a last column when it fits, else under the table."""
    total = doc["total"]
    losses = numbers([total, *doc["terms"].values()])
    rows: list[tuple[Any, Any, str, str]] = [
        ("bundles · images", f"{doc['bundles']} · {doc['images']}", "", ""),
        (Text("total loss", style="bold"), losses[0], "100%", "mean per bundle, as logged"),
    ]
    for (name, v), shown in zip(doc["terms"].items(), losses[1:], strict=True):
        rows.append((f"  {name}", shown, _pct(v / total) if total else "", ""))
    gt_bg = f"{_pct(doc['gt_loss']['share'])} · {_pct(doc['background']['share'])}"
    rows.append(("from GTs · background", "", gt_bg, ""))
    rows.append(("GTs · positives per GT", f"{doc['num_gt']} · {_fmt(doc['pos_per_gt'], 2)}", "", ""))
    o = doc["orphans"]
    reasons = ", ".join(f"{k} {v}" for k, v in o["by_reason"].items())
    count = Text(str(o["count"]), style=BAD if o["count"] else "")
    rows.append(
        ("GTs with no positive", count, Text(_pct(o["rate"]), style=BAD if o["count"] else ""), reasons)
    )
    rc = doc["recall_ceiling"]
    short = rc["value"] is not None and rc["value"] < 1
    rows.append(
        (
            "recall ceiling",
            f"{rc['reachable']} of {rc['num_gt']}",
            Text(_pct(rc["value"]), style=BAD if short else ""),
            f"GTs that can get a positive at all ({rc['hook']})",
        )
    )
    coco = doc.get("coco")
    if coco:
        rows += [
            (
                "COCO AP · AP50 · AP75",
                f"{_ap(coco['AP'])} · {_ap(coco['AP50'])} · {_ap(coco['AP75'])}",
                "",
                "",
            ),
            (
                "AP small · medium · large",
                f"{_ap(coco['APs'])} · {_ap(coco['APm'])} · {_ap(coco['APl'])}",
                "",
                "",
            ),
            (
                "GTs detected (IoU 0.5)",
                "",
                _pct(doc["detected_rate"]),
                f"{coco['num_dets']} detections",
            ),
        ]
    return _key_values("Dataset", rows, width, wide)


def _key_values(title: str, rows: list[tuple[Any, Any, Any, str]], width: int, wide: bool) -> list[Any]:
    """Label, value, share and detail: the detail in its own column if the table fits, else as
    indented lines ``label: detail`` under it (so neither a value nor a detail is cut)."""
    cols = [fit.Col("", justify="left"), fit.Col("value"), fit.Col("share"), fit.Col("", justify="left")]
    grid = fit.Grid(title, cols)
    for row in rows:
        grid.row(*row)
    if wide or fit.table_width(grid.cols) <= width:
        return grid.render(width, wide)
    grid.cols.pop()
    out = grid.render(width, wide)
    for label, _value, _share, detail in rows:
        if detail:
            name = label.plain if isinstance(label, Text) else label
            out.append(Text(f"  {name.strip()}: {detail}", style="dim"))
    return out


def group_grid(title: str, rows: list[dict[str, Any]], key: str, label, ap_cols: tuple[str, ...]) -> fit.Grid:
    """Classes or size buckets: counts, zero-positive rate, ceiling, loss, and the COCO columns given.
    Left out first when space is short: detected rate, AP50, ceiling, positives per GT."""
    drops = {"pos/GT": 1, "ceiling": 2, "AP50": 3, "det": 4}
    heads = [
        key,
        "GTs",
        "pos/GT",
        "no pos",
        "ceiling",
        "loss/GT",
        "share",
        *ap_cols,
        *(("det",) if ap_cols else ()),
    ]
    grid = fit.Grid(
        title,
        [
            fit.Col(h, justify="left" if h == key else "right", key=h == key, drop=drops.get(h, 0))
            for h in heads
        ],
    )
    rows = [r for r in rows if r["num_gt"] or r.get("AP")]
    pos = numbers([r["pos_per_gt"] for r in rows], 1)
    loss = numbers([r["loss_per_gt"] for r in rows], 3)
    for k, r in enumerate(rows):
        cells = [
            label(r),
            str(r["num_gt"]),
            pos[k],
            Text(_pct(r["zero_pos_rate"]), style=BAD if r["orphans"] else ""),
            Text(_pct(r["ceiling"]), style=BAD if r["unreachable"] else ""),
            loss[k],
            _pct(r["share"]),
            *(_ap(r.get(c)) for c in ap_cols),
        ]
        if ap_cols:
            cells.append(_pct(r.get("detected_rate")))
        grid.row(*cells)
    return grid


def levels_grid(doc: dict[str, Any]) -> fit.Grid:
    """Per level: positives, share, then foreground and background loss per term (continued in a
    second table, under the same level labels, when they do not fit)."""
    names = list(doc["terms"])
    levels = doc["levels"]
    cols = [fit.Col("level", justify="left", key=True), fit.Col("positives"), fit.Col("share")]
    grid = fit.Grid("Levels", cols)
    cols[0].cells = [level_label(lv["level"], lv["stride"]) for lv in levels]
    cols[1].cells = [str(lv["num_pos"]) for lv in levels]
    cols[2].cells = [_pct(lv["share"]) for lv in levels]
    for part in ("fg", "bg"):
        for n in names:
            grid.cols.append(
                fit.Col(f"{n} {part}", cells=numbers([lv[part].get(n, 0.0) for lv in levels], 3))
            )
    return grid


def gts_grid(title: str, rows: list[dict[str, Any]], names: ClassNames | None = None) -> fit.Grid:
    """GT rows: who, size, positives, loss, share, detected and the reason code (never cut: the
    box size, size bucket and detected are left out first when space is short)."""
    label = (names or ClassNames()).label
    drops = {"w×h orig": 3, "size": 2, "detected": 1, "share": 4}
    heads = ("image", "ann", "class", "w×h orig", "size", "pos", "loss", "share", "detected", "why")
    grid = fit.Grid(
        title,
        [
            fit.Col(
                h, justify="left" if h in ("image", "class", "why", "size") else "right", drop=drops.get(h, 0)
            )
            for h in heads
        ],
    )
    loss = numbers([g["total"] for g in rows])
    for k, g in enumerate(rows):
        x1, y1, x2, y2 = g["box_orig_xyxy"]
        det = g["detected"]
        grid.row(
            g["image"],
            "" if g["ann_id"] is None else str(g["ann_id"]),
            label(g["class"]),
            f"{x2 - x1:.0f}×{y2 - y1:.0f}",
            g["bucket"],
            Text(str(g["num_pos"]), style=BAD if g["num_pos"] == 0 else ""),
            loss[k],
            _pct(g["share"]),
            "—" if det is None else Text("yes" if det else "missed", style="" if det else WARN),
            Text(g["reason"] or "", style=WARN),
        )
    return grid


def images_grid(doc: dict[str, Any]) -> fit.Grid:
    heads = ("image", "bundle", "loss", "GTs", "pos", "no pos", "missed")
    grid = fit.Grid(
        f"Images by loss (top {len(doc['top_images'])})",
        [
            fit.Col(
                h, justify="left" if h in ("image", "bundle") else "right", drop=1 if h == "bundle" else 0
            )
            for h in heads
        ],
    )
    loss = numbers([im["total"] for im in doc["top_images"]])
    for k, im in enumerate(doc["top_images"]):
        grid.row(
            im["image"],
            im["bundle"].rsplit("/", 1)[-1],
            loss[k],
            str(im["num_gt"]),
            str(im["num_pos"]),
            str(im["orphans"]),
            "—" if im["missed"] is None else str(im["missed"]),
        )
    return grid


def offenders_grid(doc: dict[str, Any]) -> fit.Grid:
    label = scan_doc_names(doc).label
    heads = ("image", "level", "pred class", "score", "box orig (xyxy)", "loss")
    grid = fit.Grid(
        "Background offenders that look like missing labels (confident, overlap no GT)",
        [
            fit.Col(h, justify="left" if h == "image" else "right", drop=1 if h == "box orig (xyxy)" else 0)
            for h in heads
        ],
    )
    loss = numbers([o["contribution"] for o in doc["offenders"]])
    for k, o in enumerate(doc["offenders"]):
        grid.row(
            o["image"],
            "" if o["stride"] is None else f"s{o['stride']:g}",
            label(o["pred_class"]),
            f"{o['score']:.3f}",
            ", ".join(f"{v:.0f}" for v in o["box_orig_xyxy"]),
            loss[k],
        )
    return grid


def problems(doc: dict[str, Any]) -> Text | None:
    text = Text()
    for kind, items, style in (
        ("failed", doc["failed"], BAD),
        ("CONSERVATION VIOLATED", doc["violations"], BAD),
        ("non-finite loss", doc["nonfinite"], BAD),
        ("warning", doc["warnings"], WARN),
    ):
        for item in items:
            text.append(f"{kind}: ", style=style)
            text.append(f"{item}\n")
    return text if len(text) else None


def render_scan(console: Console, doc: dict[str, Any], wide: bool = False) -> None:
    width = console.width
    head = Text("yolodbg scan", style="bold")
    head.append(f" · recipe {doc['recipe']}", style="")
    if doc["interrupted"]:
        head.append(" · INTERRUPTED: partial results", style=BAD)
    ap = doc.get("coco") is not None
    parts: list[Any] = [head, Text(""), *summary(doc, width, wide), Text("")]
    names = scan_doc_names(doc)
    cls_label = lambda r: names.label(r["class"])  # noqa: E731
    cls_ap, size_ap = (("AP", "AP50"), ("AP",)) if ap else ((), ())
    grids = [
        group_grid("Classes", doc["classes"], "class", cls_label, cls_ap),
        group_grid("Sizes (original px²)", doc["sizes"], "size", lambda r: r["bucket"], size_ap),
        levels_grid(doc),
        images_grid(doc),
        gts_grid(f"GTs by loss (top {len(doc['top_gts'])})", doc["top_gts"], names),
    ]
    if doc["missed_high_loss"]:
        grids.append(
            gts_grid("High loss and missed (not matched at IoU 0.5)", doc["missed_high_loss"], names)
        )
    listed = doc["orphans"]["listed"]
    if listed:
        rows = [
            {**o, "box_orig_xyxy": [0, 0, *o["size_orig"]], "num_pos": 0, "total": o["loss"], "share": None}
            for o in listed
        ]
        grids.append(
            gts_grid(f"GTs with no positive ({len(listed)} of {doc['orphans']['count']})", rows[:30], names)
        )
    if doc["offenders"]:
        grids.append(offenders_grid(doc))
    for grid in grids:
        parts += [*grid.render(width, wide), Text("")]
    p = problems(doc)
    if p is not None:
        parts.append(p)
    console.print(Group(*parts))


def checkpoints_grid(doc: dict[str, Any]) -> fit.Grid:
    """One row per checkpoint: terms, total, AP; left out first when space is short: AP50, the
    zero-positive rate, the recall ceiling, the bundle count."""
    names = list(doc["terms"])
    rows = doc["checkpoints"]
    drops = {"bundles": 4, "ceiling": 3, "no pos": 2, "AP50": 1}
    heads = ["checkpoint", "bundles", *names, "total", "AP", "AP50", "no pos", "ceiling"]
    grid = fit.Grid(
        "Checkpoints",
        [
            fit.Col(
                h,
                justify="left" if h == "checkpoint" else "right",
                key=h == "checkpoint",
                drop=drops.get(h, 0),
            )
            for h in heads
        ],
    )
    columns = [
        [c["label"] for c in rows],
        [str(c["bundles"]) for c in rows],
        *(numbers([c["terms"].get(n) for c in rows]) for n in names),
        numbers([c["total"] for c in rows]),
        [_ap(c["AP"]) for c in rows],
        [_ap(c["AP50"]) for c in rows],
        [_pct(c["orphan_rate"]) for c in rows],
        [_pct(c["ceiling"]) for c in rows],
    ]
    for col, cells in zip(grid.cols, columns, strict=True):
        col.cells = list(cells)
    return grid


def trajectories_grid(doc: dict[str, Any]) -> fit.Grid:
    grid = fit.Grid(
        "Trajectories",
        [fit.Col("series", justify="left"), fit.Col("first → last"), fit.Col("status", justify="left")],
    )
    for name, series in doc["series"].items():
        v = [x for x in series["values"] if x is not None]
        digits = 3 if name.endswith("AP") or name.endswith("AP50") else 4
        span = " → ".join(numbers([v[0], v[-1]], digits)) if v else "—"
        status = series["status"]
        grid.row(name, span, Text(status, style=BAD if status in ("diverging", "plateau") else ""))
    return grid


def tracked_gts(title: str, rows: list[dict[str, Any]], width: int, wide: bool) -> list[Any]:
    """GTs followed over the checkpoints; their losses in a column when it fits, else one indented
    line per GT under the table."""
    if not rows:
        return [Text(f"{title}: none", style="bold")]
    shown = rows[:30]
    heads = ("image", "ann", "class", "size", "reasons", "loss per checkpoint")
    grid = fit.Grid(f"{title} ({len(rows)})", [fit.Col(h, justify="left") for h in heads])
    losses = [" ".join(numbers(r["loss"], 3)) for r in shown]
    for r, loss in zip(shown, losses, strict=True):
        grid.row(
            r["image"],
            "" if r["ann_id"] is None else str(r["ann_id"]),
            ClassNames({r["class"]: r["category_id"]} if r.get("category_id") is not None else None).label(
                r["class"]
            ),
            r["bucket"],
            ", ".join(sorted({x for x in r["reasons"] if x})),
            loss,
        )
    if wide or fit.table_width(grid.cols) <= width:
        return grid.render(width, wide)
    grid.cols.pop()
    out = grid.render(width, wide)
    if shown:
        out.append(Text("  loss per checkpoint:", style="dim"))
    for r, loss in zip(shown, losses, strict=True):
        who = f"image {r['image']} " + (
            f"ann {r['ann_id']}" if r["ann_id"] is not None else f"gt {r['gt_index']}"
        )
        for line in fit.lines([f"{who}:", *loss.split(" ")], width - 4, indent=" " * 6, sep=" "):
            out.append(Text(f"    {line}" if line.startswith(who) else f"  {line}", style="dim"))
    return out


def render_trend(console: Console, doc: dict[str, Any], wide: bool = False) -> None:
    width = console.width
    parts: list[Any] = [Text("yolodbg trend", style="bold"), Text("")]
    for grid in (checkpoints_grid(doc), trajectories_grid(doc)):
        parts += [*grid.render(width, wide), Text("")]
    for key, title in (
        ("always_orphaned", "GTs with no positive at every checkpoint"),
        ("always_high_loss", "GTs in the top loss decile at every checkpoint"),
    ):
        parts += [*tracked_gts(title, doc[key], width, wide), Text("")]
    for f in doc["flags"]:
        parts.append(Text(f"• {f}", style=WARN))
    console.print(Group(*parts))
