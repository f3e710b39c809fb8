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
from rich.table import Table
from rich.text import Text

from yolodbg.class_names import ClassNames, scan_doc_names
from yolodbg.render.console import _fmt, level_label

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


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", show_edge=False, header_style="bold")


def summary(doc: dict[str, Any]) -> Table:
    t = _table("Dataset")
    t.add_column("", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("", overflow="fold")
    total = doc["total"]
    t.add_row("bundles · images", f"{doc['bundles']} · {doc['images']}", "")
    t.add_row(Text("total loss", style="bold"), _fmt(total), "mean per bundle, as logged")
    for name, v in doc["terms"].items():
        t.add_row(f"  {name}", _fmt(v), _pct(v / total) if total else "")
    t.add_row(
        "from GTs · background", f"{_pct(doc['gt_loss']['share'])} · {_pct(doc['background']['share'])}", ""
    )
    t.add_row("GTs · positives per GT", f"{doc['num_gt']} · {_fmt(doc['pos_per_gt'], 2)}", "")
    o = doc["orphans"]
    reasons = ", ".join(f"{k} {v}" for k, v in o["by_reason"].items())
    t.add_row(
        "GTs with no positive",
        Text(f"{o['count']} ({_pct(o['rate'])})", style=BAD if o["count"] else ""),
        reasons,
    )
    rc = doc["recall_ceiling"]
    t.add_row(
        "recall ceiling",
        Text(_pct(rc["value"]), style=BAD if rc["value"] is not None and rc["value"] < 1 else ""),
        f"{rc['reachable']} of {rc['num_gt']} GTs can get a positive at all ({rc['hook']})",
    )
    coco = doc.get("coco")
    if coco:
        t.add_row(
            "COCO AP · AP50 · AP75", f"{_ap(coco['AP'])} · {_ap(coco['AP50'])} · {_ap(coco['AP75'])}", ""
        )
        t.add_row(
            "AP small · medium · large", f"{_ap(coco['APs'])} · {_ap(coco['APm'])} · {_ap(coco['APl'])}", ""
        )
        t.add_row("GTs detected (IoU 0.5)", _pct(doc["detected_rate"]), f"{coco['num_dets']} detections")
    return t


def group_table(title: str, rows: list[dict[str, Any]], key: str, label, ap_cols: tuple[str, ...]) -> Table:
    """Classes or size buckets: counts, zero-positive rate, ceiling, loss, and the COCO columns given."""
    t = _table(title)
    for col in (key, "GTs", "pos/GT", "no pos", "ceiling", "loss/GT", "share", *ap_cols):
        t.add_column(col, justify="left" if col == key else "right", no_wrap=True)
    if ap_cols:
        t.add_column("det", justify="right", no_wrap=True)
    for r in rows:
        if not r["num_gt"] and not r.get("AP"):
            continue
        cells = [
            label(r),
            str(r["num_gt"]),
            _fmt(r["pos_per_gt"], 1),
            Text(_pct(r["zero_pos_rate"]), style=BAD if r["orphans"] else ""),
            Text(_pct(r["ceiling"]), style=BAD if r["unreachable"] else ""),
            _fmt(r["loss_per_gt"], 3),
            _pct(r["share"]),
            *(_ap(r.get(c)) for c in ap_cols),
        ]
        if ap_cols:
            cells.append(_pct(r.get("detected_rate")))
        t.add_row(*cells)
    return t


def levels_table(doc: dict[str, Any]) -> Table:
    t = _table("Levels")
    names = list(doc["terms"])
    for col in ("level", "positives", *(f"{n} fg" for n in names), *(f"{n} bg" for n in names), "share"):
        t.add_column(col, justify="right", no_wrap=True)
    for lv in doc["levels"]:
        t.add_row(
            level_label(lv["level"], lv["stride"]),
            str(lv["num_pos"]),
            *(_fmt(lv["fg"].get(n, 0.0), 3) for n in names),
            *(_fmt(lv["bg"].get(n, 0.0), 3) for n in names),
            _pct(lv["share"]),
        )
    return t


def gts_table(title: str, rows: list[dict[str, Any]], names: ClassNames | None = None) -> Table:
    label = (names or ClassNames()).label
    t = _table(title)
    for col in ("image", "ann", "class", "w×h orig", "size", "pos", "loss", "batch share", "detected", "why"):
        t.add_column(
            col, justify="left" if col in ("image", "class", "why", "size") else "right", no_wrap=col != "why"
        )
    for g in rows:
        x1, y1, x2, y2 = g["box_orig_xyxy"]
        det = g["detected"]
        t.add_row(
            g["image"],
            "" if g["ann_id"] is None else str(g["ann_id"]),
            label(g["class"]),
            f"{x2 - x1:.0f}×{y2 - y1:.0f}",
            g["bucket"],
            Text(str(g["num_pos"]), style=BAD if g["num_pos"] == 0 else ""),
            _fmt(g["total"]),
            _pct(g["share"]),
            "—" if det is None else Text("yes" if det else "missed", style="" if det else WARN),
            Text(g["reason"] or "", style=WARN),
        )
    return t


def images_table(doc: dict[str, Any]) -> Table:
    t = _table(f"Images by loss (top {len(doc['top_images'])})")
    for col in ("image", "bundle", "loss", "GTs", "pos", "no pos", "missed"):
        t.add_column(col, justify="left" if col in ("image", "bundle") else "right", no_wrap=True)
    for im in doc["top_images"]:
        t.add_row(
            im["image"],
            im["bundle"].rsplit("/", 1)[-1],
            _fmt(im["total"]),
            str(im["num_gt"]),
            str(im["num_pos"]),
            str(im["orphans"]),
            "—" if im["missed"] is None else str(im["missed"]),
        )
    return t


def offenders_table(doc: dict[str, Any]) -> Table:
    label = scan_doc_names(doc).label
    t = _table("Background offenders that look like missing labels (confident, overlap no GT)")
    for col in ("image", "level", "pred class", "score", "box orig (xyxy)", "loss"):
        t.add_column(col, justify="left" if col == "image" else "right", no_wrap=True)
    for o in doc["offenders"]:
        t.add_row(
            o["image"],
            "" if o["stride"] is None else f"s{o['stride']:g}",
            label(o["pred_class"]),
            f"{o['score']:.3f}",
            ", ".join(f"{v:.0f}" for v in o["box_orig_xyxy"]),
            _fmt(o["contribution"]),
        )
    return t


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


def render_scan(console: Console, doc: dict[str, Any]) -> None:
    head = Text("yolodbg scan", style="bold")
    head.append(f" · recipe {doc['recipe']}", style="")
    if doc["interrupted"]:
        head.append(" · INTERRUPTED: partial results", style=BAD)
    ap = doc.get("coco") is not None
    parts: list[Any] = [head, Text(""), summary(doc), Text("")]
    names = scan_doc_names(doc)
    cls_label = lambda r: names.label(r["class"])  # noqa: E731
    cls_ap, size_ap = (("AP", "AP50"), ("AP",)) if ap else ((), ())
    parts += [group_table("Classes", doc["classes"], "class", cls_label, cls_ap), Text("")]
    parts += [
        group_table("Sizes (original px²)", doc["sizes"], "size", lambda r: r["bucket"], size_ap),
        Text(""),
    ]
    parts += [levels_table(doc), Text(""), images_table(doc), Text("")]
    parts += [gts_table(f"GTs by loss (top {len(doc['top_gts'])})", doc["top_gts"], names), Text("")]
    if doc["missed_high_loss"]:
        parts += [
            gts_table("High loss and missed (not matched at IoU 0.5)", doc["missed_high_loss"], names),
            Text(""),
        ]
    listed = doc["orphans"]["listed"]
    if listed:
        rows = [
            {**o, "box_orig_xyxy": [0, 0, *o["size_orig"]], "num_pos": 0, "total": o["loss"], "share": None}
            for o in listed
        ]
        parts += [
            gts_table(f"GTs with no positive ({len(listed)} of {doc['orphans']['count']})", rows[:30], names),
            Text(""),
        ]
    if doc["offenders"]:
        parts += [offenders_table(doc), Text("")]
    p = problems(doc)
    if p is not None:
        parts.append(p)
    console.print(Group(*parts))


def render_trend(console: Console, doc: dict[str, Any]) -> None:
    t = _table("Checkpoints")
    names = list(doc["terms"])
    for col in ("checkpoint", "bundles", *names, "total", "AP", "AP50", "no pos", "ceiling"):
        t.add_column(col, justify="left" if col == "checkpoint" else "right", no_wrap=True)
    for c in doc["checkpoints"]:
        t.add_row(
            c["label"],
            str(c["bundles"]),
            *(_fmt(c["terms"].get(n)) for n in names),
            _fmt(c["total"]),
            _ap(c["AP"]),
            _ap(c["AP50"]),
            _pct(c["orphan_rate"]),
            _pct(c["ceiling"]),
        )
    s = _table("Trajectories")
    s.add_column("series", no_wrap=True)
    s.add_column("first → last", justify="right", no_wrap=True)
    s.add_column("status", no_wrap=True)
    for name, series in doc["series"].items():
        v = [x for x in series["values"] if x is not None]
        span = f"{_fmt(v[0])} → {_fmt(v[-1])}" if v else "—"
        status = series["status"]
        s.add_row(name, span, Text(status, style=BAD if status in ("diverging", "plateau") else ""))
    parts: list[Any] = [Text("yolodbg trend", style="bold"), Text(""), t, Text(""), s, Text("")]
    for key, title in (
        ("always_orphaned", "GTs with no positive at every checkpoint"),
        ("always_high_loss", "GTs in the top loss decile at every checkpoint"),
    ):
        rows = doc[key]
        g = _table(f"{title} ({len(rows)})")
        for col in ("image", "ann", "class", "size", "loss per checkpoint", "reasons"):
            g.add_column(col, no_wrap=col != "loss per checkpoint")
        for r in rows[:30]:
            g.add_row(
                r["image"],
                "" if r["ann_id"] is None else str(r["ann_id"]),
                ClassNames(
                    {r["class"]: r["category_id"]} if r.get("category_id") is not None else None
                ).label(r["class"]),
                r["bucket"],
                " ".join(_fmt(x, 3) for x in r["loss"]),
                ", ".join(sorted({x for x in r["reasons"] if x})),
            )
        parts += [g, Text("")]
    for f in doc["flags"]:
        parts.append(Text(f"• {f}", style=WARN))
    console.print(Group(*parts))
