"""The HTML report (``explain --html``): one self-contained file to attach to a bug report.

Summary, per-image table, a sortable GT table (a few lines of inline JavaScript), the costliest
background anchors, warnings and every overlay inline as a base64 PNG. Nothing is fetched: a
Content-Security-Policy forbids any request other than the inline ``data:`` images.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

from yolodbg import __version__
from yolodbg.atomic import atomic_write
from yolodbg.explain import Explanation
from yolodbg.render._draw import ramp
from yolodbg.render.console import align_column, level_label
from yolodbg.render.overlay import pct, render_overlay

MAX_OVERLAYS = 16  # inline overlays of at most this many images (the costliest), to keep the file small
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d1d1f;max-width:1400px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}.num{text-align:right;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;margin:4px 0}th,td{padding:3px 9px;border-bottom:1px solid #eee;white-space:nowrap}
th{background:#f4f4f6;text-align:left}table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.why{white-space:normal;min-width:260px}.bad{color:#c0142c;font-weight:600}.code{color:#a15c00}
.warn{background:#fff6d6;padding:6px 10px;border-left:4px solid #e6a700;margin:4px 0}
.err{background:#ffe3e6;border-left-color:#c0142c}.note{color:#555}
.bar{display:inline-block;height:9px;vertical-align:middle;margin-left:6px}
figure{display:inline-block;margin:0 16px 16px 0;vertical-align:top}figure img{max-width:100%;border:1px solid #ccc}
figcaption{color:#555}
"""
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var desc = th.getAttribute("aria-sort") !== "descending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (r) { var c = r.cells[col], v = c.getAttribute("data-v");
        return v === null ? c.textContent : (v === "" ? -Infinity : parseFloat(v)); };
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        var o = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return desc ? -o : o; });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.documentElement.setAttribute("data-ready", "1");
"""


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or not math.isfinite(v):
        return "—" if v is None else str(v)
    if v == 0:
        return "0"
    return f"{v:.3e}" if abs(v) >= 1e4 or abs(v) < 1e-3 else f"{v:.{digits}f}"


def _num(v: float | None, text: str | None = None) -> str:
    """A right-aligned numeric cell; ``data-v`` carries the exact value for sorting."""
    data = "" if v is None or not math.isfinite(v) else repr(float(v))
    return f'<td class="num" data-v="{data}">{escape(text if text is not None else _fmt(v))}</td>'


def _td(text: str, cls: str = "") -> str:
    return f'<td class="{cls}">{escape(text)}</td>' if cls else f"<td>{escape(text)}</td>"


def _table(head: Sequence[str], rows: Sequence[str], sortable: bool = False) -> str:
    cls = ' class="sortable"' if sortable else ""
    ths = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table{cls}><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary(ex: Explanation) -> str:
    bd, res = ex.breakdown, ex.result
    total = bd.total
    rows = [f"<tr>{_td('objective')}{_num(res.objective)}<td></td><td></td><td></td></tr>"]
    rows.append(f"<tr><th>total</th>{_num(total)}{_num(1.0, '100%')}<td></td><td></td></tr>")
    for name, value in {**res.terms, **res.extra_terms}.items():
        gts = math.fsum(g.terms[name] for g in bd.gts)
        share = _num(value / total, pct(value / total)) if total and name in res.terms else "<td></td>"
        rows.append(f"<tr>{_td(name)}{_num(value)}{share}{_num(gts)}{_num(bd.background[name])}</tr>")
    return _table(["", "value", "share", "from GTs", "background"], rows)


def _counts(ex: Explanation) -> str:
    bd = ex.breakdown
    orphans = sum(1 for g in bd.gts if g.num_pos == 0)
    ignored = f" (+{len(ex.targets.ignored)} ignored)" if ex.targets.ignored else ""
    per = f" · {bd.num_pos / len(bd.gts):.1f} per GT" if bd.gts else ""
    text = f"{len(bd.gts)} GTs{ignored} · {bd.num_pos} positive anchors{per} · GTs with no positive: "
    cls = ' class="bad"' if orphans else ""
    notes = "".join(f'<div class="note">{escape(n)}</div>' for n in ex.result.notes)
    return f"<p>{escape(text)}<span{cls}>{orphans}</span></p>{notes}"


def _images(ex: Explanation) -> str:
    bd, total = ex.breakdown, ex.breakdown.total
    rows = []
    for im in bd.images:
        info = ex.bundle.images[im.index] if im.index < len(ex.bundle.images) else None
        share = im.total / total if total else 0.0
        rows.append(
            f"<tr>{_num(im.index, str(im.index))}{_td(info.label if info else str(im.index))}"
            f"{_td((info.file_name or '') if info else '')}{_num(im.total)}{_num(share, pct(share))}"
            f"{_num(im.num_gt, str(im.num_gt))}{_num(im.num_pos, str(im.num_pos))}</tr>"
        )
    return _table(["#", "image", "file", "loss", "share", "GTs", "positives"], rows, sortable=True)


def _gts(ex: Explanation, names: Sequence[str] | None) -> str:
    bd = ex.breakdown
    terms = list(ex.result.terms)
    labels = {i.index: i.label for i in ex.bundle.images}
    vmax = max((g.share for g in bd.gts), default=0.0) or 1.0
    rows = []
    for g in sorted(bd.gts, key=lambda g: -g.total):
        bar = "rgb({},{},{})".format(*ramp(g.share / vmax))
        w, h = g.size
        cls = names[g.cls] if names is not None and g.cls < len(names) else str(g.cls)
        why = "" if g.reason is None else f'<span class="code">{escape(g.reason.code)}</span>: '
        why += escape(g.reason.detail) if g.reason is not None else ""
        why += escape("".join(f" · {n} {flag}" for flag, n in g.flags.items()))
        pos_cls = ' class="num bad"' if g.num_pos == 0 else ' class="num"'
        rows.append(
            f"<tr>{_td(labels.get(g.image_index, str(g.image_index)))}{_num(g.gt_index, str(g.gt_index))}"
            f"{_num(g.ann_id, '' if g.ann_id is None else str(g.ann_id))}{_td(cls)}"
            f'{_num(w * h, f"{w:.0f}×{h:.0f}")}<td{pos_cls} data-v="{g.num_pos}">{g.num_pos}</td>'
            f"{_num(g.mean_iou, _fmt(g.mean_iou, 2))}{_num(g.mean_align, _fmt(g.mean_align, 3))}"
            + "".join(_num(g.terms[t]) for t in terms)
            + f'<td class="num" data-v="{g.share!r}">{pct(g.share)}'
            f'<span class="bar" style="width:{round(60 * g.share / vmax)}px;background:{bar}"></span></td>'
            f'<td class="why">{why}</td></tr>'
        )
    align = align_column(ex)
    head = ["image", "gt", "ann", "class", "w×h px", "pos", "IoU", align.header if align else "align", *terms]
    head += ["share", "why"]
    return _table(head, rows, sortable=True)


def _negatives(ex: Explanation, names: Sequence[str] | None) -> str:
    labels = {i.index: i.label for i in ex.bundle.images}
    local = ex.targets.local_index().tolist()
    rows = []
    for n in ex.breakdown.negatives:
        a = n.anchor
        cell = f"{a['cell'][0]},{a['cell'][1]}"
        cls = names[n.pred_class] if names is not None and n.pred_class < len(names) else str(n.pred_class)
        rows.append(
            f"<tr>{_td(labels.get(n.image_index, str(n.image_index)))}{_td(level_label(a['level'], a['stride']))}"
            f"{_td(cell)}{_td(cls)}{_num(n.score, f'{n.score:.3f}')}"
            f"{_num(n.best_iou, f'{n.best_iou:.2f}')}{_td('' if n.best_gt is None else str(local[n.best_gt]))}"
            f"{_num(n.contribution)}{_td(n.hint, 'code')}</tr>"
        )
    head = ["image", "level", "cell", "pred class", "score", "best IoU", "best GT", "loss", "hint"]
    return _table(head, rows, sortable=True)


def _overlays(
    ex: Explanation, roots: Sequence[Path], names: Sequence[str] | None, top: int, limit: int
) -> str:
    chosen = sorted(sorted(range(ex.bundle.batch_size), key=lambda i: -ex.breakdown.images[i].total)[:limit])
    figures = []
    if len(chosen) < ex.bundle.batch_size:
        figures.append(
            f'<p class="note">The {len(chosen)} images with the largest loss of {ex.bundle.batch_size} '
            "(explain --plot DIR draws every image).</p>"
        )
    for i in chosen:
        buf = io.BytesIO()
        render_overlay(ex, i, roots=roots, names=names, top=top).save(buf, format="PNG", optimize=True)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        label = ex.bundle.images[i].label if i < len(ex.bundle.images) else str(i)
        figures.append(
            f'<figure><img alt="overlay of image {escape(label)}" src="data:image/png;base64,{data}">'
            f"<figcaption>image {escape(label)}</figcaption></figure>"
        )
    return "".join(figures)


def render_html(
    ex: Explanation,
    *,
    roots: Sequence[Path] = (),
    names: Sequence[str] | None = None,
    top: int = 3,
    overlays: int = MAX_OVERLAYS,
) -> str:
    """The whole report as one HTML string, with the overlays of the ``overlays`` costliest images inline."""
    b, t, rec = ex.bundle, ex.targets, ex.recipe
    h, w = t.input_size
    warnings = "".join(f'<div class="warn">{escape(x)}</div>' for x in [*ex.result.warnings, *t.warnings])
    warnings += "".join(
        f'<div class="warn err">conservation violated: {escape(v)}</div>' for v in ex.breakdown.violations
    )
    if ex.nonfinite is not None:
        warnings += f'<div class="warn err">non-finite loss: {escape(ex.nonfinite.message)}</div>'
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>yolodbg explain · {escape(Path(b.source).name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>yolodbg explain · {escape(Path(b.source).name)}</h1>",
        f'<div class="meta">recipe <b>{escape(rec.spec())}</b> — {escape(rec.reproduces)}<br>'
        f"bundle {escape(b.source)} · {b.batch_size} images · input {w}×{h} · ground truth {escape(t.source)}"
        f" · yolodbg {escape(__version__)}</div>",
        "<h2>Summary</h2>",
        _summary(ex),
        _counts(ex),
        warnings,
        "<h2>Images</h2>",
        _images(ex),
        '<h2>Ground-truth boxes</h2><p class="note">Click a column to sort. share = the GT\'s part of the '
        "batch total (terms are normalised batch-wide).</p>",
        _gts(ex, names),
    ]
    if ex.breakdown.negatives:
        parts += ["<h2>Background anchors by contribution</h2>", _negatives(ex, names)]
    if overlays:
        parts += ["<h2>Overlays</h2>", _overlays(ex, roots, names, top, overlays)]
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_html(ex: Explanation, path: str | Path, **kwargs) -> Path:
    """Write :func:`render_html` to ``path`` atomically (UTF-8)."""
    text = render_html(ex, **kwargs).encode("utf-8")
    return atomic_write(path, lambda f: f.write(text))
