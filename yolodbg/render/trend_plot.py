"""``yolodbg trend --plot``: small multiples of the trajectories, drawn with Pillow only.

One panel per series (each loss term, the total, AP, AP50, then per-class series up to a
limit), each with its own y range, the checkpoints on x, and the series' status in the title
(red for plateau/diverging).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PANEL_W, PANEL_H = 300, 190
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 52, 14, 26, 30
COLUMNS = 3
MAX_PANELS = 12
LINE = (31, 119, 180)
BAD = (200, 30, 30)
GREY = (120, 120, 120)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-2:
        return f"{v:.2e}"
    return f"{v:.3g}"


def _panel(draw, font, x0: int, y0: int, name: str, values: list, status: str, labels: list[str]) -> None:
    pts = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    colour = BAD if status in ("plateau", "diverging") else (0, 0, 0)
    draw.text((x0 + MARGIN_L, y0 + 6), f"{name}  [{status}]", fill=colour, font=font)
    left, top = x0 + MARGIN_L, y0 + MARGIN_T
    right, bottom = x0 + PANEL_W - MARGIN_R, y0 + PANEL_H - MARGIN_B
    draw.rectangle((left, top, right, bottom), outline=GREY)
    if not pts:
        draw.text((left + 8, top + 8), "no data", fill=GREY, font=font)
        return
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
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
    draw.text((left, bottom + 6), labels[0][:18], fill=GREY, font=font)
    if len(labels) > 1:
        last = labels[-1][:18]
        w = draw.textlength(last, font=font)
        draw.text((right - w, bottom + 6), last, fill=GREY, font=font)


def plot_trend(doc: dict[str, Any], path: str | Path) -> Path:
    """Draw the trend document's series into a PNG at ``path`` (written atomically)."""
    from PIL import Image, ImageDraw, ImageFont

    from yolodbg.atomic import atomic_write

    series = list(doc["series"].items())[:MAX_PANELS]
    labels = [c["label"] for c in doc["checkpoints"]]
    rows = max(1, math.ceil(len(series) / COLUMNS))
    img = Image.new("RGB", (PANEL_W * COLUMNS, PANEL_H * rows + 24), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 6), f"yolodbg trend · {len(labels)} checkpoints", fill=(0, 0, 0), font=font)
    for k, (name, s) in enumerate(series):
        r, c = divmod(k, COLUMNS)
        _panel(draw, font, c * PANEL_W, 24 + r * PANEL_H, name, s["values"], s["status"], labels)
    return atomic_write(path, lambda f: img.save(f, format="PNG"))
