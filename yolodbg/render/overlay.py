"""Overlay images (``explain --plot``): where one image's loss comes from, drawn on the image.

Per image: the original image (or a blank canvas of the network input), every GT box coloured
by its share of the batch loss and labelled ``#k class share`` (``k`` = its index in the image, as in
the GT table), the positive anchor points of each GT in the GT's colour (bigger dot = coarser
level), the image's most expensive background anchors as dashed boxes (their predicted boxes),
ignored GTs (``iscrowd``) dotted grey, and a legend (the marks, the classes of the image's GTs,
any label shortened for room). Every label touches its box, stays inside the picture and covers
no other label when there is room (:mod:`yolodbg.render.labels`). Boxes are drawn in
original-image pixels through the letterbox when it is known, else in network-input pixels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from yolodbg.atomic import atomic_write
from yolodbg.explain import Explanation
from yolodbg.geometry import Letterbox
from yolodbg.render import _draw as dr
from yolodbg.render import labels as placement

LONG_SIDE = (640, 1600)  # the canvas' long side is brought into this range (small images are enlarged)
BLANK, CONTENT = (44, 44, 48), (70, 70, 76)  # blank canvas: padding and image area
IGNORED_COLOUR = (170, 170, 170)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class View:
    """Maps network-input pixels to canvas pixels: through ``letterbox`` (if any), then ``zoom``."""

    letterbox: Letterbox | None
    zoom: float
    size: tuple[int, int]  # (width, height) of the drawing area

    def point(self, x: float, y: float) -> tuple[float, float]:
        if self.letterbox is not None:
            x, y = self.letterbox.to_original_point(x, y)
        return x * self.zoom, y * self.zoom

    def box(self, xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        x1, y1 = self.point(xyxy[0], xyxy[1])
        x2, y2 = self.point(xyxy[2], xyxy[3])
        return x1, y1, x2, y2


def line_width(size: tuple[int, int]) -> int:
    """Stroke width in px of a drawing area of ``size`` (w, h): 2 px up to 960 px on the long side."""
    return max(2, round(max(size) / 320))


def pct(share: float) -> str:
    """A share as a percentage with a precision that keeps small ones distinct: 12.3%, 0.42%, 0.0031%."""
    return f"{100 * share:.1f}%" if share >= 0.01 or share == 0 else f"{100 * share:.2g}%"


def _zoom(w: int, h: int) -> float:
    long = max(w, h)
    return (
        LONG_SIDE[0] / long if long < LONG_SIDE[0] else (LONG_SIDE[1] / long if long > LONG_SIDE[1] else 1.0)
    )


def image_roots(images_dir: str | Path | None, gt: str | Path | None) -> list[Path]:
    """Where to look for image files: ``--images DIR``, else next to a COCO json (its folder, ``images/``)."""
    if images_dir is not None:
        return [Path(images_dir)]
    if gt is not None and Path(gt).is_file():
        return [Path(gt).parent, Path(gt).parent / "images"]
    return []


def find_image(roots: Sequence[Path], file_name: str | None, image_id) -> Path | None:
    """The image file of a batch element: by file name, then by its stem (or image id) with any suffix."""
    stems = [Path(file_name).stem] if file_name else []
    stems += [str(image_id)] if image_id is not None else []
    for root in roots:
        if file_name and (root / file_name).is_file():
            return root / file_name
        if file_name and (root / Path(file_name).name).is_file():
            return root / Path(file_name).name
        for stem in stems:
            for suffix in IMAGE_SUFFIXES:
                if (root / f"{stem}{suffix}").is_file():
                    return root / f"{stem}{suffix}"
    return None


def class_labels(ex: Explanation) -> list[str]:
    """Class index -> how every report writes it (``square (2)``; :class:`yolodbg.class_names.ClassNames`)."""
    return ex.class_names.labels(ex.result.pred_scores.shape[-1])


def image_negatives(ex: Explanation, image: int, k: int) -> list[dict]:
    """The ``k`` background anchors of ``image`` that cost the most (summed over the logged terms)."""
    res = ex.result
    n = res.fg.shape[1]
    cost = torch.zeros(n, dtype=torch.float64)
    for t in res.terms:
        led = res.ledger[t]
        keep = (led.image == image) & (led.gt < 0)
        cost.index_add_(0, led.anchor[keep], led.values[keep])
    k = min(k, int((cost > 0).sum()))
    out = []
    for a in torch.topk(cost, k).indices.tolist() if k > 0 else []:
        score, cls = res.pred_scores[image, a].max(-1)
        box = res.pred_boxes[image, a].tolist()
        out.append({"anchor": a, "box": box, "cls": int(cls), "score": float(score), "cost": float(cost[a])})
    return out


def _clip(box, size: tuple[int, int], margin: int) -> tuple[float, float, float, float] | None:
    """``box`` clipped to the drawing area (plus ``margin``), or None when it lies outside."""
    x1, y1, x2, y2 = (
        max(box[0], -margin),
        max(box[1], -margin),
        min(box[2], size[0] + margin),
        min(box[3], size[1] + margin),
    )
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _base(ex: Explanation, image: int, roots: Sequence[Path]) -> tuple[Image.Image, View, Path | None]:
    info = ex.bundle.images[image] if image < len(ex.bundle.images) else None
    lbs = ex.targets.letterboxes
    lb = lbs[image] if image < len(lbs) and lbs[image] is not None else (info.letterbox if info else None)
    path = find_image(roots, info.file_name, info.image_id) if info is not None and roots else None
    if path is not None and lb is not None:
        with Image.open(path) as im:
            w, h = im.size
            zoom = _zoom(w, h)
            size = (max(round(w * zoom), 1), max(round(h * zoom), 1))
            return im.convert("RGB").resize(size, Image.BILINEAR), View(lb, zoom, size), path
    ih, iw = ex.targets.input_size
    zoom = _zoom(iw, ih)
    size = (max(round(iw * zoom), 1), max(round(ih * zoom), 1))
    canvas = Image.new("RGB", size, BLANK)
    origs = ex.targets.orig_sizes
    orig = origs[image] if image < len(origs) and origs[image] else (info.orig_size if info else None)
    if lb is not None and orig is not None:
        oh, ow = orig
        x1, y1 = lb.pad_left * zoom, lb.pad_top * zoom
        ImageDraw.Draw(canvas).rectangle(
            (x1, y1, x1 + ow * lb.scale_x * zoom - 1, y1 + oh * lb.scale_y * zoom - 1), fill=CONTENT
        )
    return canvas, View(None, zoom, size), None


@dataclass(frozen=True)
class Label:
    """A label to place: ``texts`` are the full text and shorter fallbacks (``#k``) for lack of room."""

    priority: int  # 0 GT, 1 background anchor, 2 ignored GT: placed in this order
    box: tuple[float, float, float, float]
    texts: tuple[str, ...]
    colour: tuple[int, int, int]
    below: bool = False


def class_label(cls: int, names: Sequence[str] | None) -> str:
    """How an overlay writes class ``cls`` (an index into the model's classes): its name when known.
    The one place label and legend text get a class from."""
    return names[cls] if names is not None and 0 <= cls < len(names) else str(cls)


def _draw_ignored(ex: Explanation, image: int, draw: ImageDraw.ImageDraw, view: View, lw: int) -> list[Label]:
    """Ignored GTs (iscrowd) as grey dashed boxes; returns their labels."""
    labels: list[Label] = []
    for ig in ex.targets.ignored:
        if ig.image_index == image:
            box = view.box(ig.box_xyxy)
            dr.dashed_box(draw, box, (IGNORED_COLOUR, None), lw, dash=lw * 2)
            labels.append(Label(2, box, (ig.reason,), IGNORED_COLOUR, below=True))
    return labels


def _draw_negatives(
    ex: Explanation,
    image: int,
    draw: ImageDraw.ImageDraw,
    view: View,
    lw: int,
    top: int,
    name: Callable[[int], str],
) -> list[Label]:
    """The ``top`` costliest background anchors' predicted boxes, dashed; returns their labels."""
    labels: list[Label] = []
    total = ex.breakdown.total
    for rank, neg in enumerate(image_negatives(ex, image, top), 1):
        box = _clip(view.box(neg["box"]), view.size, lw)
        if box is None:  # predicted outside the image
            continue
        dr.dashed_box(draw, box, ((255, 255, 255), (0, 0, 0)), lw, dash=lw * 4)
        share = neg["cost"] / total if total > 0 else 0.0
        text = f"bg{rank} {name(neg['cls'])} {neg['score']:.2f} · {pct(share)}"
        labels.append(Label(1, box, (text, f"bg{rank}"), (255, 255, 255), below=True))
    return labels


def _draw_gts(
    ex: Explanation,
    image: int,
    draw: ImageDraw.ImageDraw,
    view: View,
    lw: int,
    vmax: float,
    name: Callable[[int], str],
) -> list[Label]:
    """GT boxes coloured by their share of the loss, over dots on their positive anchors (all dots
    first, then the boxes cheapest first so the costliest ends on top); returns their labels."""
    labels: list[Label] = []
    gts = sorted((g for g in ex.breakdown.gts if g.image_index == image), key=lambda g: g.share)
    points = ex.result.anchors.points
    for g in gts:
        colour = dr.ramp(g.share / vmax)
        for p in g.positives:
            x, y = view.point(*points[p["anchor"]].tolist())
            r = lw * (1.5 + 0.75 * p["level"])
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=(0, 0, 0), width=max(1, lw // 2))
    for g in gts:  # the most expensive box ends on top
        colour = dr.ramp(g.share / vmax)
        box = view.box(g.box_xyxy)
        dr.outlined_box(draw, box, colour, lw)
        text = f"#{g.gt_index} {name(g.cls)} {pct(g.share)}" + (" · 0 pos" if g.num_pos == 0 else "")
        labels.append(Label(0, box, (text, f"#{g.gt_index}"), colour))
    return labels[::-1]  # costliest first: the best spots go to the GTs that matter most


def _place_labels(draw: ImageDraw.ImageDraw, labels: list[Label], font, lw: int) -> list[str]:
    """Draw the labels where :func:`labels.place` puts them: GTs first (costliest first), then background,
    then ignored; labels keep off small GT boxes when they can. Returns the full text of every label
    that had to be shortened, for the legend."""
    ordered = sorted(labels, key=lambda lab: lab.priority)  # stable: each kind keeps its costliest first
    specs = [
        placement.LabelSpec(lab.box, tuple(dr.label_size(draw, t, font) for t in lab.texts), lab.below)
        for lab in ordered
    ]
    small = 4 * lw * 6  # a GT box smaller than this on both sides would vanish under a label
    avoid = [
        (k, placement.clip_box(lab.box, draw.im.size))
        for k, lab in enumerate(ordered)
        if lab.priority == 0 and max(lab.box[2] - lab.box[0], lab.box[3] - lab.box[1]) < small
    ]
    shortened = []
    for lab, spot in zip(ordered, placement.place(specs, draw.im.size, avoid), strict=True):
        dr.label(draw, spot.rect, lab.texts[spot.variant], lab.colour, font)
        if spot.variant > 0:
            shortened.append(lab.texts[0])
    return shortened


def _class_note(ex: Explanation, image: int, name: Callable[[int], str]) -> str | None:
    """The legend's line that names the classes of the image's GTs, with how many of each."""
    counts: dict[int, int] = {}
    for g in ex.breakdown.gts:
        if g.image_index == image:
            counts[g.cls] = counts.get(g.cls, 0) + 1
    if not counts:
        return None
    return "GTs per class: " + " · ".join(f"{name(c)}: {n}" for c, n in sorted(counts.items()))


def _title(ex: Explanation, image: int, path: Path | None) -> str:
    """The legend's title: the image, its file, its loss and share, its GTs and positives."""
    total = ex.breakdown.total
    info = ex.bundle.images[image] if image < len(ex.bundle.images) else None
    row = ex.breakdown.images[image]
    title = f"image {info.label if info else image}" + (f" · {path.name}" if path is not None else "")
    title += f" · loss {row.total:.4g} ({pct(row.total / total)} of the batch)" if total > 0 else ""
    title += f" · {row.num_gt} GTs · {row.num_pos} positive anchors"
    return title


def render_overlay(
    ex: Explanation,
    image: int,
    *,
    roots: Sequence[Path] = (),
    names: Sequence[str] | None = None,
    top: int = 3,
) -> Image.Image:
    """The overlay of batch element ``image`` as an RGB image (drawing area on top, legend below)."""
    canvas, view, path = _base(ex, image, roots)
    w, h = view.size
    lw = line_width(view.size)
    font = dr.font(max(12, round(max(w, h) / 48)))
    draw = ImageDraw.Draw(canvas)
    vmax = max((g.share for g in ex.breakdown.gts), default=0.0) or 1.0
    name = lambda c: class_label(c, names)  # noqa: E731
    labels = _draw_ignored(ex, image, draw, view, lw)
    labels += _draw_negatives(ex, image, draw, view, lw, top, name)
    labels += _draw_gts(ex, image, draw, view, lw, vmax, name)
    shortened = _place_labels(draw, labels, font, lw)
    coords = "original-image pixels" if view.letterbox is not None else "network-input pixels"
    notes = [note for note in [_class_note(ex, image, name)] if note]
    notes += ["labels shortened for room: " + " · ".join(shortened)] if shortened else []
    legend = dr.legend(w, _title(ex, image, path), vmax, coords, font, lw, notes)
    out = Image.new("RGB", (w, h + legend.height), (255, 255, 255))
    out.paste(canvas, (0, 0))
    out.paste(legend, (0, h))
    return out


def overlay_name(ex: Explanation, image: int) -> str:
    """``003_<label>.png``: batch index, then the image's id or file stem (file-system safe)."""
    info = ex.bundle.images[image] if image < len(ex.bundle.images) else None
    label = Path(info.file_name).stem if info and info.file_name else (info.label if info else str(image))
    return f"{image:03d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', str(label)).strip('_') or image}.png"


def write_overlays(
    ex: Explanation,
    out_dir: str | Path,
    *,
    roots: Sequence[Path] = (),
    names: Sequence[str] | None = None,
    top: int = 3,
    images: Sequence[int] | None = None,
) -> list[Path]:
    """One PNG per batch element (or per index of ``images``) into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(ex.bundle.batch_size) if images is None else images:
        path = out / overlay_name(ex, i)
        picture = render_overlay(ex, i, roots=roots, names=names, top=top)
        atomic_write(path, lambda f, picture=picture: picture.save(f, format="PNG", optimize=True))
        paths.append(path)
    return paths


__all__ = [
    "Label",
    "View",
    "class_label",
    "class_labels",
    "image_roots",
    "line_width",
    "pct",
    "render_overlay",
    "write_overlays",
]
