"""Pillow drawing helpers of the overlays: colour ramp, outlined and dashed boxes, labels, legend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]
# share of the batch loss, low -> high: blue, violet, orange, red (saturated all along, so boxes show on photos)
RAMP: tuple[RGB, ...] = ((40, 90, 255), (175, 50, 220), (255, 130, 0), (240, 20, 40))
INK, PAPER = (20, 20, 20), (255, 255, 255)


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (a fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def ramp(t: float) -> RGB:
    """Colour of a loss share ``t`` in [0, 1] (clipped), linear between the ``RAMP`` stops at 0, 1/3, 2/3, 1."""
    t = min(max(t, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    f = t - i
    a, b = RAMP[i], RAMP[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))


def ink_for(colour: RGB) -> RGB:
    """Black or white text, whichever reads better on ``colour``."""
    r, g, b = colour
    return INK if 0.299 * r + 0.587 * g + 0.114 * b > 140 else PAPER


def outlined_box(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: RGB, lw: int) -> None:
    """A ``lw`` px box in ``colour`` (drawn inward from ``box``), with 1 px black edges on both sides."""
    x1, y1, x2, y2 = box
    draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(0, 0, 0), width=1)
    draw.rectangle((x1, y1, x2, y2), outline=colour, width=lw)
    if x2 - x1 > 2 * lw + 2 and y2 - y1 > 2 * lw + 2:
        draw.rectangle((x1 + lw, y1 + lw, x2 - lw, y2 - lw), outline=(0, 0, 0), width=1)


def dashed_box(
    draw: ImageDraw.ImageDraw, box: Sequence[float], colours: tuple[RGB, RGB | None], lw: int, dash: int
) -> None:
    """A dashed box: dashes alternate between ``colours[0]`` and ``colours[1]`` (None = gap)."""
    x1, y1, x2, y2 = box
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        n = max(int(length // dash), 1)
        for k in range(n):
            colour = colours[k % 2]
            if colour is None:
                continue
            s, e = k / n, (k + 1) / n
            p = (a[0] + (b[0] - a[0]) * s, a[1] + (b[1] - a[1]) * s)
            q = (a[0] + (b[0] - a[0]) * e, a[1] + (b[1] - a[1]) * e)
            draw.line((p, q), fill=colour, width=lw)


LABEL_PAD = 2  # px between a label's text and the edge of its filled rectangle


def label_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    """(width, height) of the filled label that :func:`label` draws for ``text``."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left + 2 * LABEL_PAD, bottom - top + 2 * LABEL_PAD


def label(draw: ImageDraw.ImageDraw, rect: Sequence[float], text: str, colour: RGB, fnt) -> None:
    """A label: ``rect`` (from :func:`label_size` and the placement) filled with ``colour``, ``text`` on it."""
    x1, y1, x2, y2 = rect
    left, top, _, _ = draw.textbbox((0, 0), text, font=fnt)
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    draw.text((x1 + LABEL_PAD - left, y1 + LABEL_PAD - top), text, fill=ink_for(colour), font=fnt)


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=fnt) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line]


Icon = Callable[[ImageDraw.ImageDraw, int, int, int], int]  # (draw, x, y, size) -> width used


def _legend_items(width: int, vmax: float, coords: str, lw: int) -> list[tuple[Icon | None, str]]:
    """What the legend explains, each with the icon drawn before its text: the colour ramp, the
    positive-anchor dots, the background-anchor and ignored-GT dashed boxes, the labels."""

    def ramp_icon(draw, x, y, s):
        bar = min(160, width // 3)
        for k in range(bar):
            draw.line(((x + k, y), (x + k, y + s - 1)), fill=ramp(k / max(bar - 1, 1)))
        return bar

    def dots_icon(draw, x, y, s):
        cx = x
        for level in range(3):
            r = lw * (1.5 + 0.75 * level)
            draw.ellipse((cx, y + s / 2 - r, cx + 2 * r, y + s / 2 + r), fill=RAMP[1], outline=(0, 0, 0))
            cx += 2 * r + 3
        return int(cx - x)

    def dashed_icon(colours):
        def icon(draw, x, y, s):
            dashed_box(draw, (x + 1, y + 1, x + 2 * s, y + s - 1), colours, max(1, lw // 2 + 1), dash=lw * 2)
            return 2 * s + 2

        return icon

    return [
        (
            ramp_icon,
            f"GT box colour = share of the batch loss, 0 … {vmax:.1%} (the costliest GT of the batch)",
        ),
        (dots_icon, "positive anchors of a GT (larger dot = coarser level)"),
        (
            dashed_icon(((255, 255, 255), (0, 0, 0))),
            "costliest background anchors (predicted box: class, score, share)",
        ),
        (dashed_icon(((150, 150, 150), None)), "ignored GT (iscrowd)"),
        (
            None,
            f"#k = GT index in its image · bgN = its N-th costliest background anchor · coordinates: {coords}",
        ),
    ]


def _legend_rows(
    items: list[tuple[Icon | None, str]],
    scratch: ImageDraw.ImageDraw,
    fnt,
    size: int,
    width: int,
    pad: int,
    gap: int,
) -> list[list[tuple[Icon | None, list[str]]]]:
    """The items laid out in rows that fit ``width``, each item's text wrapped beside its icon."""
    rows: list[list[tuple[Icon | None, list[str]]]] = [[]]
    used = 0
    for icon, text in items:
        iw = icon(scratch, 0, 0, size) + 6 if icon else 0
        lines = _wrap(scratch, text, fnt, width - 2 * pad - iw)
        need = iw + max(int(scratch.textlength(ln, font=fnt)) for ln in lines)
        if rows[-1] and used + gap + need > width - 2 * pad:
            rows.append([])
            used = 0
        rows[-1].append((icon, lines))
        used += (gap if used else 0) + need
    return rows


def legend(
    width: int, title: str, vmax: float, coords: str, fnt, lw: int, notes: Sequence[str] = ()
) -> Image.Image:
    """The legend strip under an overlay: title, the colour ramp, what each mark means, then ``notes``
    (the classes in the image, labels shortened for lack of room)."""
    size = fnt.size if hasattr(fnt, "size") else 11
    gap, pad = size, max(6, size // 2)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items = [*_legend_items(width, vmax, coords, lw), *((None, note) for note in notes)]
    rows = _legend_rows(items, scratch, fnt, size, width, pad, gap)
    title_lines = _wrap(scratch, title, fnt, width - 2 * pad)
    line_h = int(size * 1.35)
    height = pad * 2 + line_h * len(title_lines) + sum(line_h * max(len(t) for _, t in r) for r in rows) + 4
    img = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(img)
    y = pad
    for ln in title_lines:
        draw.text((pad, y), ln, fill=INK, font=fnt)
        y += line_h
    y += 4
    for row in rows:
        x = pad
        for icon, lines in row:
            if icon is not None:
                x += icon(draw, x, y + (line_h - size) // 2, size) + 6
            for k, ln in enumerate(lines):
                draw.text((x, y + k * line_h), ln, fill=INK, font=fnt)
            x += max(int(draw.textlength(ln, font=fnt)) for ln in lines) + gap
        y += line_h * max(len(t) for _, t in row)
    draw.line(((0, 0), (width, 0)), fill=(200, 200, 200))
    return img
