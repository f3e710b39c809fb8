"""YOLOv5 anchor-based head (``Detect`` of ultralytics/yolov5 v7.0): raw train-mode output -> tensors.

The training output is a list over levels of ``(B, na, H, W, 5 + nc)`` raw values, last axis
``(tx, ty, tw, th, obj, cls...)``, levels in stride order. An eval-mode ``(inference, [levels])``
tuple is accepted too (the list is used). Anchors are read from the bundle (per level, in input
pixels); the loss works with them in grid units, as the model holds them (pixels ÷ stride).

Anchor order of the flattened views ``(B, N, C)``: per level, slot-major ``(na, H, W)`` with
rows outer and columns inner, i.e. index ``offset_level + a·H·W + y·W + x``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from yolodbg.anchors import Anchors
from yolodbg.errors import BundleError
from yolodbg.evaluate.decode import Detections, nms
from yolodbg.evaluate.postprocess import PostProcess
from yolodbg.geometry import cxcywh_to_xyxy
from yolodbg.heads.lazy import LazyAnchorTensor
from yolodbg.heads.registry import Recognition, recorded

# Pixel anchors of the yolov5{n,s,m,l,x}.yaml (3 levels) and yolov5{n,s,m,l,x}6.yaml (4 levels) models.
DEFAULT_ANCHORS_PX: dict[int, tuple[tuple[tuple[float, float], ...], ...]] = {
    3: (
        ((10, 13), (16, 30), (33, 23)),
        ((30, 61), (62, 45), (59, 119)),
        ((116, 90), (156, 198), (373, 326)),
    ),
    4: (
        ((19, 27), (44, 40), (38, 94)),
        ((96, 68), (86, 152), (180, 137)),
        ((140, 301), (303, 264), (238, 542)),
        ((436, 615), (739, 380), (925, 792)),
    ),
}
DEFAULT_STRIDES = {1: (8.0,), 2: (8.0, 16.0), 3: (8.0, 16.0, 32.0), 4: (8.0, 16.0, 32.0, 64.0)}


@dataclass(frozen=True)
class V5Output:
    """A parsed YOLOv5 training output."""

    levels: tuple[Tensor, ...]  # per level (B, na, H, W, 5 + nc), untouched
    level_shapes: tuple[tuple[int, int], ...]  # (H, W) per level
    strides: tuple[float, ...]
    anchors_px: Tensor  # (nl, na, 2) float32, input pixels
    anchors_grid: Tensor  # (nl, na, 2) float32, grid units: anchors_px / stride, as Detect stores them
    input_size: tuple[int, int]  # (H, W)
    batch_size: int
    na: int
    nc: int
    anchors_from: str  # "bundle" or "default"

    @property
    def nl(self) -> int:
        return len(self.levels)

    @property
    def num_anchors(self) -> int:
        return sum(self.na * h * w for h, w in self.level_shapes)

    @property
    def level_offsets(self) -> tuple[int, ...]:
        """Index of each level's first anchor in the flattened ``(B, N)`` views."""
        out, n = [], 0
        for h, w in self.level_shapes:
            out.append(n)
            n += self.na * h * w
        return tuple(out)


def _levels(outputs: Any, where: str) -> tuple[Tensor, ...]:
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], (list, tuple)):
        outputs = outputs[1]  # eval-mode (inference, train-format levels)
    if (
        not isinstance(outputs, (list, tuple))
        or not outputs
        or not all(isinstance(t, Tensor) for t in outputs)
    ):
        raise BundleError(
            f"{where}: not a YOLOv5 training output; expected a list of per-level (B, na, H, W, 5+nc) tensors"
        )
    for i, t in enumerate(outputs):
        if t.ndim != 5:
            raise BundleError(
                f"{where}: outputs[{i}] has shape {tuple(t.shape)}; expected (B, na, H, W, 5+nc) (YOLOv5 Detect "
                "in train mode)"
            )
        if not t.is_floating_point():
            raise BundleError(f"{where}: outputs[{i}] is {t.dtype}; expected floating point")
    first = outputs[0]
    for i, t in enumerate(outputs):
        if t.shape[0] != first.shape[0] or t.shape[1] != first.shape[1] or t.shape[4] != first.shape[4]:
            raise BundleError(
                f"{where}: outputs[{i}] {tuple(t.shape)} and outputs[0] {tuple(first.shape)} disagree in batch size, "
                "anchors per cell or channels"
            )
    if first.shape[4] < 6:
        raise BundleError(f"{where}: {first.shape[4]} channels per anchor; expected 5 + nc with nc ≥ 1")
    return tuple(outputs)


def _strides(
    shapes: tuple[tuple[int, int], ...],
    strides: tuple[float, ...] | None,
    input_size: tuple[int, int] | None,
    where: str,
) -> tuple[float, ...]:
    if strides is not None:
        if len(strides) != len(shapes):
            raise BundleError(
                f"{where}: {len(strides)} strides for {len(shapes)} levels; pass one stride per level"
            )
        return tuple(float(s) for s in strides)
    if input_size is not None:
        out = []
        for h, w in shapes:
            sy, sx = input_size[0] / h, input_size[1] / w
            if sy != sx or sy != int(sy):
                raise BundleError(
                    f"{where}: input size {input_size[0]}x{input_size[1]} does not divide into the level shape "
                    f"{h}x{w}; pass --strides"
                )
            out.append(float(sy))
        return tuple(out)
    if len(shapes) in DEFAULT_STRIDES:
        return DEFAULT_STRIDES[len(shapes)]
    raise BundleError(f"{where}: cannot infer the strides of {len(shapes)} levels; pass --strides")


def _anchors_px(anchors: Any, nl: int, na: int, where: str) -> tuple[Tensor, str]:
    if anchors is None:
        if nl not in DEFAULT_ANCHORS_PX or na != 3:
            raise BundleError(
                f"{where}: no anchors field, and there are no default anchors for {nl} levels × {na} anchors; "
                "save the model's anchors in pixels (Detect.anchors × stride) as bundle['anchors']"
            )
        return torch.tensor(DEFAULT_ANCHORS_PX[nl], dtype=torch.float32), "default"
    try:
        t = torch.as_tensor(anchors, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise BundleError(
            f"{where}: anchors is not a nested list of numbers; expected [[[w, h], ...], ...]"
        ) from None
    if t.ndim == 2 and t.shape[0] == nl and t.shape[1] == 2 * na:  # yaml style: [w, h, w, h, ...] per level
        t = t.view(nl, na, 2)
    if t.shape != (nl, na, 2):
        raise BundleError(
            f"{where}: anchors has shape {tuple(t.shape)}; the outputs need ({nl}, {na}, 2): per level, {na} "
            "[w, h] pairs in input pixels"
        )
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise BundleError(f"{where}: anchors must be positive finite sizes in input pixels; got {t.tolist()}")
    return t.contiguous(), "bundle"


def parse(
    outputs: Any,
    *,
    strides: tuple[float, ...] | None = None,
    input_size: tuple[int, int] | None = None,
    anchors: Any = None,
    nc: int | None = None,
    where: str = "bundle",
) -> V5Output:
    """Validate a YOLOv5 training output, its strides and its anchors."""
    levels = _levels(outputs, where)
    shapes = tuple((int(t.shape[2]), int(t.shape[3])) for t in levels)
    strd = _strides(shapes, strides, input_size, where)
    bs, na, no = int(levels[0].shape[0]), int(levels[0].shape[1]), int(levels[0].shape[4])
    if nc is not None and nc != no - 5:
        raise BundleError(
            f"{where}: outputs have {no - 5} classes (5 + nc = {no} channels) but --nc is {nc}; drop --nc or fix it"
        )
    size = (int(shapes[0][0] * strd[0]), int(shapes[0][1] * strd[0]))
    if input_size is not None and tuple(input_size) != size:
        raise BundleError(
            f"{where}: input_size {list(input_size)} disagrees with the first level {shapes[0][0]}x{shapes[0][1]} × "
            f"stride {strd[0]:g} = {list(size)}; fix input_size/--imgsz or --strides"
        )
    px, source = _anchors_px(anchors, len(levels), na, where)
    grid = px / torch.tensor(strd, dtype=torch.float32).view(-1, 1, 1)
    return V5Output(levels, shapes, strd, px, grid, size, bs, na, no - 5, source)


def anchors(out: V5Output) -> Anchors:
    """The anchor table: ``na`` slots per cell, slot-major per level (cached: batches share their geometry)."""
    return _anchor_table(out.level_shapes, out.strides, out.na)


@functools.lru_cache(maxsize=8)
def _anchor_table(shapes: tuple[tuple[int, int], ...], strides: tuple[float, ...], na: int) -> Anchors:
    return Anchors.grid(shapes, strides, slots=na)


def flat(out: V5Output, channels: slice) -> Tensor:
    """``(B, N, C)`` raw values of the given channels over all levels, in anchor order (a copy)."""
    parts = [t[..., channels] for t in out.levels]
    return torch.cat([p.reshape(out.batch_size, -1, p.shape[-1]) for p in parts], 1)


def where_is(out: V5Output, a: int) -> tuple[int, int, int, int]:
    """Flat anchor index -> ``(level, slot, y, x)``."""
    for i in reversed(range(out.nl)):
        start = out.level_offsets[i]
        if a >= start:
            h, w = out.level_shapes[i]
            slot, rest = divmod(a - start, h * w)
            return i, slot, *divmod(rest, w)
    raise IndexError(a)


def _decode(t: Tensor, cell: Tensor, stride: float, anchor_px: Tensor) -> Tensor:
    """Raw ``(..., >=4)`` box channels at cells ``(..., 2)`` -> xyxy pixels ``(..., 4)`` (YOLOv5 Detect decode)."""
    s = t[..., :4].detach().float().sigmoid() * 2
    xy = (s[..., :2] - 0.5 + cell) * stride
    wh = s[..., 2:4].square() * anchor_px
    return torch.cat((xy - wh / 2, xy + wh / 2), -1)


def decode_boxes(out: V5Output) -> Tensor:
    """``(B, N, 4)`` predicted boxes, xyxy input pixels, decoded as YOLOv5's Detect does.

    ``xy = (2σ(t_xy) − 0.5 + cell) · stride``, ``wh = (2σ(t_wh))² · anchor_px``.
    """
    boxes = []
    for t, (h, w), s, anc in zip(out.levels, out.level_shapes, out.strides, out.anchors_px, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cell = torch.stack((xs, ys), -1).to(torch.float32)  # (H, W, 2)
        boxes.append(_decode(t, cell, s, anc.view(1, -1, 1, 1, 2)).reshape(out.batch_size, -1, 4))
    return torch.cat(boxes, 1)


def scores(out: V5Output) -> Tensor:
    """``(B, N, nc)`` detection confidences σ(obj) · σ(cls), as YOLOv5 ranks its detections."""
    parts = []
    for t in out.levels:
        p = t[..., 4:].detach().float().sigmoid()
        parts.append((p[..., :1] * p[..., 1:]).reshape(out.batch_size, -1, out.nc))
    return torch.cat(parts, 1)


def _raw(out: V5Output, b: int, a: int) -> tuple[Tensor, int, int, int, int]:
    lvl, slot, y, x = where_is(out, a)
    return out.levels[lvl][b, slot, y, x], lvl, slot, y, x


def _box_row(out: V5Output, b: int, a: int) -> Tensor:
    raw, lvl, slot, y, x = _raw(out, b, a)
    cell = torch.tensor([x, y], dtype=torch.float32)
    return _decode(raw, cell, out.strides[lvl], out.anchors_px[lvl, slot])


def _score_row(out: V5Output, b: int, a: int) -> Tensor:
    p = _raw(out, b, a)[0][4:].detach().float().sigmoid()
    return p[:1] * p[1:]


def lazy_boxes(out: V5Output) -> LazyAnchorTensor:
    """:func:`decode_boxes`, computed for single anchors on demand (see :mod:`yolodbg.heads.lazy`)."""
    n = out.num_anchors
    return LazyAnchorTensor(
        (out.batch_size, n, 4), lambda b, a: _box_row(out, b, a), lambda: decode_boxes(out)
    )


def lazy_scores(out: V5Output) -> LazyAnchorTensor:
    """:func:`scores`, computed for single anchors on demand."""
    n = out.num_anchors
    return LazyAnchorTensor(
        (out.batch_size, n, out.nc), lambda b, a: _score_row(out, b, a), lambda: scores(out)
    )


def lazy_raw(out: V5Output, channels: slice, width: int) -> LazyAnchorTensor:
    """:func:`flat` of some raw channels, materialised only when used (the NaN locator)."""
    n = out.num_anchors
    return LazyAnchorTensor(
        (out.batch_size, n, width), lambda b, a: _raw(out, b, a)[0][channels], lambda: flat(out, channels)
    )


def validator_detections(out: V5Output, pp: PostProcess) -> list[Detections]:
    """YOLOv5 7.0 as ``val.py`` evaluates: ``Detect`` in inference mode, then ``non_max_suppression``.

    Per level the sigmoid of the whole output; ``xy = (2σ + grid − 0.5) · stride``,
    ``wh = (2σ)² · anchors · stride`` (the grid-unit anchors ``Detect`` stores, times the stride);
    candidates with objectness > conf; class scores times objectness; centre/size -> corners; one
    row per (box, class) above conf; rows sorted by score (torch's default sort, as YOLOv5 does
    before torchvision's stable NMS); class-aware NMS; the first ``max_det``.
    """
    per_level = []
    for t, (h, w), stride, anc in zip(
        out.levels, out.level_shapes, out.strides, out.anchors_grid, strict=True
    ):
        y = t.detach().float().sigmoid()
        xy, wh, conf = y.split((2, 2, out.nc + 1), 4)
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        grid = torch.stack((xs, ys), 2).expand(1, out.na, h, w, 2) - 0.5
        anchor_grid = (anc * stride).view(1, out.na, 1, 1, 2)
        xy = (xy * 2 + grid) * stride
        wh = (wh * 2) ** 2 * anchor_grid
        per_level.append(torch.cat((xy, wh, conf), 4).view(out.batch_size, -1, 5 + out.nc))
    pred = torch.cat(per_level, 1)
    dets = []
    for x in pred:
        x = x[x[:, 4] > pp.conf]
        x[:, 5:] *= x[:, 4:5]
        box = cxcywh_to_xyxy(x[:, :4])
        if pp.multi_label and out.nc > 1:
            i, j = (x[:, 5:] > pp.conf).nonzero().T
            box, score, label = box[i], x[i, 5 + j], j
        else:
            score, label = x[:, 5:].max(1)
            keep = score > pp.conf
            box, score, label = box[keep], score[keep], label[keep]
        order = score.argsort(descending=True)[: pp.max_nms]
        box, score, label = box[order], score[order], label[order]
        kept = nms(box + label[:, None].to(box.dtype) * pp.max_wh, score, pp.iou, pp.max_det, labels=label)
        dets.append(Detections(box[kept], score[kept], label[kept]))
    return dets


def parse_bundle(bundle: Any) -> V5Output:
    """:func:`parse` with what a loaded bundle records (strides, input size, anchors, ``--nc``)."""
    return parse(bundle.outputs, anchors=bundle.anchors, **recorded(bundle))


def detections(
    bundle: Any, pp: PostProcess, parsed: V5Output | None = None, probs: Tensor | None = None
) -> list[Detections] | None:
    """``val.py``'s detections from the parsed output (None without one: the replay's boxes are used).
    ``probs`` is not read: the detection score needs the objectness too."""
    return validator_detections(parsed, pp) if parsed is not None else None


def recognise(outputs: Any) -> Recognition | None:
    """Per-level ``(B, na, H, W, 5 + nc)`` tensors are YOLOv5's (no other head has an anchor axis)."""
    levels = isinstance(outputs, (list, tuple)) and outputs
    return Recognition() if levels and all(isinstance(t, Tensor) and t.ndim == 5 for t in outputs) else None


def level_shapes(outputs: Any) -> tuple[tuple[int, int], ...] | None:
    """``(H, W)`` of every level of per-level ``(B, na, H, W, C)`` tensors, or None if malformed."""
    if not isinstance(outputs, (list, tuple)) or not outputs:
        return None
    if not all(isinstance(t, Tensor) and t.ndim == 5 for t in outputs):
        return None
    return tuple((int(t.shape[2]), int(t.shape[3])) for t in outputs)
