"""``yolodbg trend --plot``: small multiples of the trajectories, drawn with Pillow only.

One panel per series (each loss term, the total, AP, AP50, then the per-class series), the
checkpoints on x, and the series' status in the title (red for plateau/diverging). With more
classes than fit in ``MAX_PANELS``, the classes with the highest last loss per GT are drawn and
the title says "top K of N classes". Each panel has its own y range, or, with ``shared_scale``,
one range per unit: all loss terms and the total, all loss-per-GT series, all AP series.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PANEL_W, PANEL_H = 300, 190
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 52, 14, 26, 30
COLUMNS = 3
MAX_PANELS = 24
LINE = (31, 119, 180)
BAD = (200, 30, 30)
GREY = (120, 120, 120)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.2e}"
    return f"{v:.3g}"


def _label(text: str, limit: int = 22) -> str:
    """An x label that fits under half a panel: its end, which tells checkpoints apart, is kept."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _finite(values: list) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _panel(
    draw, font, x0: int, y0: int, name: str, values: list, status: str, labels: list[str], scale=None
) -> None:
    pts = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    colour = BAD if status in ("plateau", "diverging") else (0, 0, 0)
    draw.text((x0 + MARGIN_L, y0 + 6), f"{name}  [{status}]", fill=colour, font=font)
    left, top = x0 + MARGIN_L, y0 + MARGIN_T
    right, bottom = x0 + PANEL_W - MARGIN_R, y0 + PANEL_H - MARGIN_B
    draw.rectangle((left, top, right, bottom), outline=GREY)
    if not pts:
        draw.text((left + 8, top + 8), "no data", fill=GREY, font=font)
        return
    lo, hi = scale if scale is not None else (min(v for _, v in pts), max(v for _, v in pts))
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.05 or 0.5), hi + (abs(hi) * 0.05 or 0.5)
    n = max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (left + (right - left) * i / n, bottom - (bottom - top) * (v - lo) / (hi - lo))

    draw.text((x0 + 2, top - 4), _fmt(hi), fill=GREY, font=font)
    draw.text((x0 + 2, bottom - 8), _fmt(lo), fill=GREY, font=font)
    line = [xy(i, v) for i, v in pts]
    if len(line) > 1:
        draw.line(line, fill=LINE, width=2)
    for px, py in line:
        draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=LINE)
    draw.text((left, bottom + 6), _label(labels[0]), fill=GREY, font=font)
    if len(labels) > 1:
        last = _label(labels[-1])
        w = draw.textlength(last, font=font)
        draw.text((right - w, bottom + 6), last, fill=GREY, font=font)


def _unit(name: str) -> str:
    """Which series share a y range with ``shared_scale``."""
    if name.endswith("AP") or name.endswith("AP50"):
        return "AP"
    return "loss/GT" if name.endswith("loss/GT") else "loss"


def _class_of(name: str) -> str | None:
    return name.split(" ")[1] if name.startswith("class ") else None


def choose_series(series: dict[str, Any], limit: int = MAX_PANELS) -> tuple[list[str], str]:
    """The series drawn and a note on the classes: every series when they fit, else every non-class
    series and the classes with the highest last loss per GT (the ones worth a look)."""
    base = [n for n in series if _class_of(n) is None]
    classes = list(dict.fromkeys(c for n in series if (c := _class_of(n)) is not None))
    per_class = {c: [n for n in series if _class_of(n) == c] for c in classes}
    room = max(limit - len(base), 0)
    width = max((len(v) for v in per_class.values()), default=1)
    k = min(len(classes), room // width)
    if k == len(classes):
        return list(series), f"all {len(classes)} classes" if classes else ""

    def last_loss(c: str) -> float:
        v = _finite(series[f"class {c} loss/GT"]["values"]) if f"class {c} loss/GT" in series else []
        return v[-1] if v else -math.inf

    top = sorted(classes, key=lambda c: (-last_loss(c), classes.index(c)))[:k]
    chosen = [n for c in classes if c in top for n in per_class[c]]
    return base + chosen, f"top {k} of {len(classes)} classes by last loss/GT"


def shared_scales(series: dict[str, Any], names: list[str]) -> dict[str, tuple[float, float]]:
    """One (low, high) per unit over the drawn series (``shared_scale``)."""
    out: dict[str, tuple[float, float]] = {}
    for n in names:
        vals = _finite(series[n]["values"])
        if not vals:
            continue
        lo, hi = out.get(_unit(n), (min(vals), max(vals)))
        out[_unit(n)] = (min(lo, *vals), max(hi, *vals))
    return {
        u: (lo, hi) if hi > lo else (lo - (abs(lo) * 0.05 or 0.5), hi + (abs(hi) * 0.05 or 0.5))
        for u, (lo, hi) in out.items()
    }


def plot_trend(doc: dict[str, Any], path: str | Path, shared_scale: bool = False) -> Path:
    """Draw the trend document's series into a PNG at ``path`` (written atomically)."""
    from PIL import Image, ImageDraw, ImageFont

    from yolodbg.atomic import atomic_write

    names, classes_note = choose_series(doc["series"])
    scales = shared_scales(doc["series"], names) if shared_scale else {}
    labels = [c["label"] for c in doc["checkpoints"]]
    rows = max(1, math.ceil(len(names) / COLUMNS))
    img = Image.new("RGB", (PANEL_W * COLUMNS, PANEL_H * rows + 24), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    title = " · ".join(
        t
        for t in (f"yolodbg trend · {len(labels)} checkpoints", classes_note, "shared y scale" * shared_scale)
        if t
    )
    draw.text((8, 6), title, fill=(0, 0, 0), font=font)
    for k, name in enumerate(names):
        s = doc["series"][name]
        r, c = divmod(k, COLUMNS)
        scale = scales.get(_unit(name))
        _panel(draw, font, c * PANEL_W, 24 + r * PANEL_H, name, s["values"], s["status"], labels, scale)
    return atomic_write(path, lambda f: img.save(f, format="PNG"))
