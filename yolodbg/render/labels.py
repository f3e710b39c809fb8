"""Where an overlay's labels go: touching their box, inside the picture, not on top of each other.

Pure geometry (no drawing), so the rules can be tested on random boxes. The placement is greedy:
labels are placed one at a time in the order given (the overlay passes the costliest GT first), and
each takes the first free spot of a fixed list around its own box: above it at the left, below it
at the left, inside at the top left, then the other corners, beside it, then slid along its edges.
Every spot touches the box and is shifted into the picture, so a label never floats away from its
box and never leaves the image (as long as it is not larger than the image). "Free" means it covers
no label placed before it; spots that also keep off the ``avoid`` rectangles (small boxes of other
GTs, which a label would hide) are preferred. When no spot is free for the full text, the shorter
variants are tried (the overlay's ``#k``); only when none is free either does a label overlap others,
at the spot where it covers the least, and its placement says so (``free=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Rect = tuple[float, float, float, float]  # x1, y1, x2, y2 in canvas pixels
Size = tuple[float, float]  # width, height of a label


@dataclass(frozen=True)
class LabelSpec:
    """One label to place: the box it names and the size of each text variant (preferred first)."""

    box: Rect
    sizes: tuple[Size, ...]
    below: bool = False  # try below the box before above it (background anchors, ignored GTs)


@dataclass(frozen=True)
class Placement:
    """Where a label went: its rectangle, which text variant fits there, and whether it is clear of
    every label placed before it."""

    rect: Rect
    variant: int
    free: bool


def clip_box(box: Rect, canvas: Size) -> Rect:
    """``box`` clipped to the canvas (a box partly outside is labelled at its visible part)."""
    w, h = canvas
    x1, x2 = sorted((min(max(box[0], 0.0), w), min(max(box[2], 0.0), w)))
    y1, y2 = sorted((min(max(box[1], 0.0), h), min(max(box[3], 0.0), h)))
    return x1, y1, x2, y2


def overlaps(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share interior area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def touches(a: Rect, b: Rect) -> bool:
    """Whether two rectangles overlap or meet at an edge or corner."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def overlap_area(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _steps(start: float, stop: float, step: float) -> list[float]:
    """``start``, ``start + step``, ... up to ``stop`` (inclusive), ``stop`` always last."""
    out, v = [], start
    while v < stop:
        out.append(v)
        v += step
    return [*out, stop]


def spots(box: Rect, size: Size, canvas: Size, below: bool = False) -> list[Rect]:
    """Every spot a label of ``size`` may take for ``box``, in order of preference, each touching the
    (clipped) box and shifted into the canvas: the corners first, then slid along the four edges."""
    x1, y1, x2, y2 = clip_box(box, canvas)
    w, h = size
    above_left, below_left = (x1, y1 - h), (x1, y2)
    first = [below_left, above_left] if below else [above_left, below_left]
    corners = [
        *first,
        (x1, y1),  # inside, top left
        (x2 - w, y1 - h),  # above, right
        (x2 - w, y2),  # below, right
        (x2 - w, y1),  # inside, top right
        (x1, y2 - h),  # inside, bottom left
        (x2 - w, y2 - h),  # inside, bottom right
        (x1 - w, y1),  # beside, left
        (x2, y1),  # beside, right
        (x1 - w, y2 - h),
        (x2, y2 - h),
    ]
    step = max(h / 2, 1.0)
    along = [(x, y) for y in (y1 - h, y2) for x in _steps(x1 - w, x2, step)]  # over and under the box
    along += [(x, y) for x in (x1 - w, x2) for y in _steps(y1 - h, y2, step)]  # left and right of it
    out: list[Rect] = []
    seen: set[Rect] = set()
    for x, y in corners + along:
        x = min(max(x, 0.0), max(canvas[0] - w, 0.0))
        y = min(max(y, 0.0), max(canvas[1] - h, 0.0))
        rect = (x, y, x + w, y + h)
        if rect not in seen:
            seen.add(rect)
            out.append(rect)
    return out


def place(
    labels: Sequence[LabelSpec], canvas: Size, avoid: Sequence[tuple[int, Rect]] = ()
) -> list[Placement]:
    """Place ``labels`` in order (see the module docstring); ``avoid`` holds (owner, rect) pairs that
    labels other than the ``owner``-th keep off when they can. Returns one placement per label."""
    placed: list[Rect] = []
    out: list[Placement] = []
    for k, spec in enumerate(labels):
        keep_off = [r for owner, r in avoid if owner != k]
        choice = _free_spot(spec, canvas, placed, keep_off)
        if choice is None:
            variant = len(spec.sizes) - 1
            options = spots(spec.box, spec.sizes[variant], canvas, spec.below)
            rect = min(options, key=lambda r: sum(overlap_area(r, p) for p in placed))
            choice = Placement(rect, variant, free=False)
        placed.append(choice.rect)
        out.append(choice)
    return out


def _free_spot(spec: LabelSpec, canvas: Size, placed: list[Rect], keep_off: list[Rect]) -> Placement | None:
    """The first spot clear of every placed label: full text clear of ``keep_off`` too, then full text,
    then each shorter variant the same way; None when no variant has a free spot."""
    for variant, size in enumerate(spec.sizes):
        first_free = None
        for rect in spots(spec.box, size, canvas, spec.below):
            if any(overlaps(rect, p) for p in placed):
                continue
            if not any(overlaps(rect, a) for a in keep_off):
                return Placement(rect, variant, free=True)
            first_free = first_free or rect
        if first_free is not None:
            return Placement(first_free, variant, free=True)
    return None


__all__ = ["LabelSpec", "Placement", "clip_box", "overlaps", "place", "spots", "touches"]
