"""The ``audit`` report: console list, and one self-contained HTML page with a crop per suspect.

Console: the suspects in one table (id, type, score, image, annotation, class, box, checkpoints)
laid out as every report's (:mod:`yolodbg.render.fit`: the columns that fit, the others named under
it, ``--wide`` shows all), then each one's evidence in words, wrapped between words and never cut,
and the most suspect images. HTML: the suspects best first, each a crop of its image with the GT
box (solid) and the box the model agrees on (dashed), filterable by type; nothing is fetched.
"""

from __future__ import annotations

import base64
import io
import textwrap
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from yolodbg import __version__
from yolodbg.atomic import atomic_write
from yolodbg.render import _draw as dr
from yolodbg.render import fit
from yolodbg.render.html import CSP, STYLE
from yolodbg.render.overlay import IMAGE_SUFFIXES, find_image

GT_COLOUR, MODEL_COLOUR = (255, 214, 0), (40, 200, 255)
CROP_SIDE = 220  # px of the crop's long side in the page
AUDIT_STYLE = """
.issue{display:inline-block;width:260px;margin:0 12px 16px 0;vertical-align:top;font-size:13px}
.issue img{width:100%;border:1px solid #ccc;image-rendering:pixelated}.issue .t{font-weight:600}
.key{display:inline-block;width:12px;height:3px;vertical-align:middle;margin:0 4px}
button{margin:0 6px 6px 0}button[aria-pressed=true]{background:#1d1d1f;color:#fff}
"""
AUDIT_SCRIPT = """
document.querySelectorAll("button[data-type]").forEach(function (b) {
  b.addEventListener("click", function () {
    var t = b.getAttribute("data-type");
    document.querySelectorAll("button[data-type]").forEach(function (x) {
      x.setAttribute("aria-pressed", String(x === b)); });
    document.querySelectorAll(".issue").forEach(function (d) {
      d.style.display = (t === "all" || d.getAttribute("data-type") === t) ? "" : "none"; });
  });
});
document.documentElement.setAttribute("data-ready", "1");
"""


def _box(b: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in b) + "]"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def evidence_text(x: dict[str, Any]) -> str:
    """The issue's evidence in one sentence of numbers."""
    ev, t = x.get("evidence") or {}, x["type"]
    if t == "wrong_class" and ev.get("other_class") != x.get("suggested_class_name"):
        s = (
            f"its {ev.get('positives', 0)} positives score {x.get('suggested_class_name')} "
            f"{ev.get('pos_other_score', 0):.3f}, {x.get('class_name')} {ev.get('pos_own_score', 0):.3f} "
            f"(anchors on it: {ev['anchors_on']})"
        )
    elif t == "wrong_class":
        s = (
            f"anchors on it score {x.get('suggested_class_name')} {ev['other_score']:.3f}, "
            f"{x.get('class_name')} {ev['own_score']:.3f} ({ev['anchors_on']} anchors)"
        )
        if ev.get("positives"):
            s += f"; its {ev['positives']} positives: {ev['pos_own_score']:.3f} own class"
    elif t == "bad_box":
        edges = ", ".join(f"{k} {v:+g}px" for k, v in ev["edges_px"].items() if abs(v) >= 0.5)
        s = (
            f"{_count(ev['consensus_anchors'], 'anchor')} agree (score {ev['consensus_score']:.3f}) on "
            f"{_box(ev['consensus_bbox'])}, IoU {ev['consensus_iou']:.2f} with the GT; {edges or 'no edge moved'}"
        )
    elif t == "missing_label":
        s = (
            f"{_count(ev['anchors'], 'background anchor')} agree on {x.get('class_name')} (score {ev['score']:.3f}); "
            f"best IoU with any GT {ev['best_gt_iou']:.2f}"
        )
    elif t == "spurious_label":
        s = f"best score of any class at anchors touching it {ev['support']:.3f}"
        if ev.get("positives"):
            s += f"; its {ev['positives']} positives score its class {ev['pos_own_score']:.3f}"
    else:
        s = f"IoU {ev['iou']:.2f} with annotation {ev['duplicate_of']} of the same class"
    if x.get("loss_share") is not None:
        s += f"; loss share {_pct(x['loss_share'])}"
    if x.get("observed", 1) > 1:
        s += f"; flagged in {x['checkpoints']} of {x['observed']} checkpoints"
    return s


def issue_line(x: dict[str, Any]) -> str:
    ann = "" if x.get("ann_id") is None else f" ann {x['ann_id']}"
    return (
        f"{x['id']}  {x['type']}  {x['score']:.3f}  image {x['image_id']}{ann}  "
        f"{x.get('class_name') or x.get('class')}  {_box(x['bbox'])}"
    )


def plural(n: int, noun: str) -> str:
    """``1 bundle``, ``2 bundles``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render_audit(console: Console, doc: dict[str, Any], top: int, wide: bool = False) -> None:
    """Header, counts, the ``top`` issues and their evidence, and the most suspect images."""
    counts = [f"{k} {v}" for k, v in doc["counts"].items()]
    console.print(Text(f"yolodbg audit · recipe {doc['recipe'] or '—'}", style="bold"))
    console.print(
        Text(
            f"{plural(doc['bundles'], 'bundle')} · {plural(doc['num_images'], 'image')} · {doc['num_gt']} GTs · "
            f"checkpoints per image up to {doc['checkpoints']}"
        )
    )
    for line in fit.lines([f"issues: {counts[0]}", *counts[1:]], console.width):
        console.print(Text(line))
    shown = doc["issues"][:top]
    console.print()
    fit.show(console, issues_grid(shown, len(doc["issues"])), wide)
    if shown:
        console.print()
        console.print(Text("Evidence", style="bold"))
        for x in shown:
            for line in _evidence_lines(x, console.width):
                console.print(Text(line), overflow="fold")
    imgs = [im for im in doc["images"] if im["score"] > 0][:top]
    if imgs:
        console.print()
        fit.show(console, images_grid(imgs), wide)
    for line in doc["failed"]:
        console.print(Text(f"failed: {line}", style="red"), overflow="fold")


def issues_grid(shown: list[dict[str, Any]], total: int) -> fit.Grid:
    """One row per suspect: id, type, score, where it is, its class, its box (COCO x, y, w, h in original
    pixels, as in the JSON) and how many checkpoints flag it; a narrow terminal leaves out the box first
    (``--wide``, ``--json`` and ``--html`` show it)."""
    title = f"Top {len(shown)} of {total} suspects (score: chance the label is wrong)"
    grid = fit.Grid(
        title,
        [
            fit.Col("id", justify="left", key=True),
            fit.Col("type", justify="left"),
            fit.Col("score"),
            fit.Col("image"),
            fit.Col("ann"),
            fit.Col("class", justify="left"),
            fit.Col("box (x, y, w, h)", justify="left", drop=2),
            fit.Col("checkpoints", drop=1),
        ],
    )
    scores = fit.numbers([x["score"] for x in shown], 3)
    for x, score in zip(shown, scores, strict=True):
        grid.row(
            x["id"],
            x["type"],
            score,
            str(x["image_id"]),
            "—" if x.get("ann_id") is None else str(x["ann_id"]),
            x.get("class_name") or str(x.get("class")),
            _box(x["bbox"]),
            f"{x.get('checkpoints', 1)} of {x.get('observed', 1)}",
        )
    return grid


def _evidence_lines(x: dict[str, Any], width: int) -> list[str]:
    """``A0001  <evidence>``, wrapped between words under the sentence's start."""
    head = f"{x['id']}  "
    return textwrap.wrap(
        evidence_text(x),
        max(20, width),
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_on_hyphens=False,
    )


def images_grid(imgs: list[dict[str, Any]]) -> fit.Grid:
    """The images whose suspects make them most likely to hold a wrong label."""
    grid = fit.Grid(
        "Most suspect images",
        [
            fit.Col("image", key=True),
            fit.Col("file", justify="left", drop=1),
            fit.Col("score"),
            fit.Col("issues"),
            fit.Col("GTs"),
        ],
    )
    scores = fit.numbers([im["score"] for im in imgs], 3)
    for im, score in zip(imgs, scores, strict=True):
        grid.row(str(im["image_id"]), im.get("file_name") or "—", score, str(im["issues"]), str(im["gts"]))
    return grid


# ---------------------------------------------------------------------------------------------- HTML


def _crop(path: Path | None, x: dict[str, Any], size: tuple[int, int]) -> str | None:
    """A PNG crop (base64) around the GT box and the model's box, enlarged to :data:`CROP_SIDE`."""
    from PIL import Image, ImageDraw

    gt = x["bbox"]
    other = (x.get("evidence") or {}).get("consensus_bbox") if x["type"] != "missing_label" else None
    boxes = [gt] + ([other] if other else [])
    x1 = min(b[0] for b in boxes)
    y1 = min(b[1] for b in boxes)
    x2 = max(b[0] + b[2] for b in boxes)
    y2 = max(b[1] + b[3] for b in boxes)
    margin = max(8.0, 0.6 * max(x2 - x1, y2 - y1))
    w, h = size
    box = (
        max(0, int(x1 - margin)),
        max(0, int(y1 - margin)),
        min(w, int(x2 + margin) + 1),
        min(h, int(y2 + margin) + 1),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    if path is not None:
        try:
            with Image.open(path) as im:
                img = im.convert("RGB").crop(box)
        except OSError:
            img = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (70, 70, 76))
    else:
        img = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), (70, 70, 76))
    zoom = CROP_SIDE / max(img.size)
    img = img.resize((max(1, round(img.width * zoom)), max(1, round(img.height * zoom))), Image.NEAREST)
    draw = ImageDraw.Draw(img)

    def place(b):
        return (
            (b[0] - box[0]) * zoom,
            (b[1] - box[1]) * zoom,
            (b[0] + b[2] - box[0]) * zoom,
            (b[1] + b[3] - box[1]) * zoom,
        )

    if x["type"] == "missing_label":
        dr.dashed_box(draw, place(gt), (MODEL_COLOUR, None), 2, 6)
    else:
        dr.outlined_box(draw, place(gt), GT_COLOUR, 2)
        if other:
            dr.dashed_box(draw, place(other), (MODEL_COLOUR, None), 2, 6)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _image_index(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(im["image_id"]): im for im in doc["images"]}


def render_audit_html(
    doc: dict[str, Any], roots: Sequence[Path], top: int, sizes: dict[str, tuple[int, int]]
) -> str:
    """The page: header, type filter, one figure per suspect (best first)."""
    images = _image_index(doc)
    shown = doc["issues"][:top]
    buttons = ['<button data-type="all" aria-pressed="true">all</button>'] + [
        f'<button data-type="{t}" aria-pressed="false">{t} ({n})</button>'
        for t, n in doc["counts"].items()
        if n
    ]
    figures = []
    for x in shown:
        im = images.get(str(x["image_id"]), {})
        path = find_image(roots, im.get("file_name"), x["image_id"]) if roots else None
        data = _crop(path, x, sizes.get(str(x["image_id"]), (10**6, 10**6)))
        pic = (
            f'<img alt="crop of image {escape(str(x["image_id"]))}" src="data:image/png;base64,{data}">'
            if data
            else ""
        )
        figures.append(
            f'<div class="issue" data-type="{escape(x["type"])}">{pic}'
            f'<div class="t">{escape(x["id"])} · {escape(x["type"])} · {x["score"]:.3f}</div>'
            f"<div>{escape(issue_line(x).split('  ', 3)[-1])}</div>"
            f'<div class="note">{escape(evidence_text(x))}</div></div>'
        )
    key = (
        f'<span class="key" style="background:rgb{GT_COLOUR}"></span>GT box (solid) '
        f'<span class="key" style="background:rgb{MODEL_COLOUR}"></span>box the model agrees on (dashed)'
    )
    counts = " · ".join(f"{k} {v}" for k, v in doc["counts"].items())
    return "\n".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>yolodbg audit</title><style>{STYLE}{AUDIT_STYLE}</style></head><body>",
            "<h1>yolodbg audit</h1>",
            f'<div class="meta">recipe <b>{escape(doc["recipe"])}</b> · {plural(doc["bundles"], "bundle")} · '
            f"{plural(doc['num_images'], 'image')} · {doc['num_gt']} GTs · issues: {escape(counts)} · yolodbg {escape(__version__)}</div>",
            f'<p class="note">The {len(shown)} best-scored of {len(doc["issues"])} suspects, best first. {key}</p>',
            "<div>" + "".join(buttons) + "</div>",
            "".join(figures),
            f"<script>{AUDIT_SCRIPT}</script></body></html>\n",
        ]
    )


def write_audit_html(doc: dict[str, Any], path: str | Path, roots: Sequence[Path], top: int) -> Path:
    sizes = {
        str(im["image_id"]): (im.get("width") or 10**6, im.get("height") or 10**6) for im in doc["images"]
    }
    text = render_audit_html(doc, roots, top, sizes).encode("utf-8")
    return atomic_write(path, lambda f: f.write(text))


__all__ = ["IMAGE_SUFFIXES", "evidence_text", "issue_line", "render_audit", "write_audit_html"]
