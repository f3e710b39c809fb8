"""YOLOX decoupled head (Megvii YOLOX): raw train-mode outputs -> the tensors ``get_losses`` reads.

The bundle holds, per level, the ``(B, 4 + 1 + nc, H, W)`` map that ``YOLOXHead`` concatenates
before decoding: regression ``(tx, ty, tw, th)``, the objectness logit, the class logits. The
training forward decodes it as follows (docs/losses.md, YOLOX), and so does :func:`parse`:

* the map is viewed as ``(B, 1, C, H, W)``, moved to ``(B, H*W, C)`` (cells row-major: y outer,
  x inner) and the levels are concatenated in stride order -> ``(B, N, C)``;
* the box centre is ``(t_xy + cell_xy) * stride`` -- from the cell *corner*, no +0.5;
* the box size is ``exp(t_wh) * stride``; objectness and class logits are left as they are.

The SimOTA centre prior, by contrast, uses the cell centre ``(cell_xy + 0.5) * stride``, which is
what :func:`anchors` returns as anchor points.

The decode is done with the same operations on tensors of the same shapes and strides as
YOLOX's, because PyTorch's CPU kernels may round a transcendental function differently for
an element that falls in a vectorised block and one that falls in the scalar tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from yolodbg.anchors import Anchors, level_map_shapes
from yolodbg.errors import BundleError
from yolodbg.evaluate.decode import Detections, batched_nms
from yolodbg.evaluate.postprocess import PostProcess
from yolodbg.heads.lazy import LazyAnchorTensor
from yolodbg.heads.registry import Recognition, recorded

DEFAULT_STRIDES = {1: (8.0,), 2: (8.0, 16.0), 3: (8.0, 16.0, 32.0), 4: (8.0, 16.0, 32.0, 64.0)}


@dataclass(frozen=True)
class YoloxOutput:
    """A parsed YOLOX training output, laid out as ``YOLOXHead.get_losses`` receives it."""

    outputs: Tensor  # (B, N, 5 + nc) decoded: cx, cy, w, h (input px), obj logit, class logits
    raw_reg: Tensor  # (B, N, 4) undecoded regression (YOLOX's ``origin_preds``, used by the L1 term)
    x_shifts: Tensor  # (N,) cell column of each anchor, float
    y_shifts: Tensor  # (N,) cell row of each anchor, float
    expanded_strides: Tensor  # (N,) stride of each anchor's level, float
    level_shapes: tuple[tuple[int, int], ...]
    strides: tuple[float, ...]
    input_size: tuple[int, int]  # (H, W) of the network input
    batch_size: int
    nc: int


def _check_levels(outputs: Any, nc: int | None, where: str) -> tuple[int, int]:
    if (
        not isinstance(outputs, (list, tuple))
        or not outputs
        or not all(isinstance(t, Tensor) for t in outputs)
    ):
        raise BundleError(
            f"{where}: YOLOX outputs must be a list of per-level (B, 5+nc, H, W) tensors (the maps YOLOXHead "
            "concatenates before decoding); got something else"
        )
    for i, t in enumerate(outputs):
        if t.ndim != 4:
            raise BundleError(f"{where}: outputs[{i}] has shape {tuple(t.shape)}; expected (B, 5+nc, H, W)")
        if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise BundleError(f"{where}: outputs[{i}] is {t.dtype}; expected floating point")
    channels = {int(t.shape[1]) for t in outputs}
    batches = {int(t.shape[0]) for t in outputs}
    if len(channels) != 1 or len(batches) != 1:
        raise BundleError(
            f"{where}: per-level tensors disagree in channels {sorted(channels)} or batch size {sorted(batches)}"
        )
    c = channels.pop()
    if c < 6:
        raise BundleError(
            f"{where}: {c} channels per level; a YOLOX head has 4 box + 1 objectness + nc ≥ 1 class channels"
        )
    if nc is not None and c != 5 + nc:
        raise BundleError(
            f"{where}: {c} channels per level do not fit --nc {nc} (expected {5 + nc}); fix --nc"
        )
    return batches.pop(), c - 5


def _layout(
    shapes: tuple[tuple[int, int], ...],
    strides: tuple[float, ...] | None,
    input_size: tuple[int, int] | None,
    where: str,
) -> tuple[tuple[float, ...], tuple[int, int]]:
    """Strides (given, else by number of levels) and input size (given, else first level × stride)."""
    if strides is None:
        if len(shapes) not in DEFAULT_STRIDES:
            raise BundleError(f"{where}: cannot infer the strides of {len(shapes)} levels; pass --strides")
        strides = DEFAULT_STRIDES[len(shapes)]
    if len(strides) != len(shapes):
        raise BundleError(
            f"{where}: {len(strides)} strides given for {len(shapes)} levels; pass one per level"
        )
    strides = tuple(float(s) for s in strides)
    (h0, w0), s0 = shapes[0], strides[0]
    if input_size is None:
        return strides, (int(h0 * s0), int(w0 * s0))
    h, w = int(input_size[0]), int(input_size[1])
    # a backbone of stride-2 convolutions gives ceil(size / stride) cells, a plain division floor(...)
    if not (abs(h0 * s0 - h) < s0 and abs(w0 * s0 - w) < s0):
        raise BundleError(
            f"{where}: input_size {[h, w]} does not fit the first level {h0}x{w0} at stride {s0:g}; fix "
            "input_size/--imgsz or --strides"
        )
    return strides, (h, w)


def _decode_level(t: Tensor, stride: float) -> tuple[Tensor, Tensor]:
    """One level ``(B, C, H, W)`` -> decoded ``(B, H*W, C)`` and the cell grid ``(H*W, 2)``, as YOLOX."""
    b, c, h, w = t.shape
    flat = t.reshape(b, 1, c, h, w).permute(0, 1, 3, 4, 2).reshape(b, h * w, c)
    yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack((xv, yv), 2).view(1, h * w, 2).to(t.dtype)
    xy = (flat[..., :2] + grid) * stride
    wh = torch.exp(flat[..., 2:4]) * stride
    return torch.cat((xy, wh, flat[..., 4:]), -1), grid[0]


def layout(
    outputs: Any,
    *,
    strides: tuple[float, ...] | None = None,
    input_size: tuple[int, int] | None = None,
    nc: int | None = None,
    where: str = "bundle",
) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...], tuple[int, int], int, int]:
    """Validate without decoding: ``(level_shapes, strides, input_size, batch_size, nc)``."""
    bs, n_cls = _check_levels(outputs, nc, where)
    shapes = tuple((int(t.shape[2]), int(t.shape[3])) for t in outputs)
    strd, size = _layout(shapes, strides, input_size, where)
    return shapes, strd, size, bs, n_cls


def parse(
    outputs: Any,
    *,
    strides: tuple[float, ...] | None = None,
    input_size: tuple[int, int] | None = None,
    nc: int | None = None,
    where: str = "bundle",
) -> YoloxOutput:
    """Validate a YOLOX training output and decode it exactly as the training forward does.

    Float16/bfloat16 maps are upcast to float32 first (the caller warns); inputs are not modified.
    """
    shapes, strd, size, bs, n_cls = layout(
        outputs, strides=strides, input_size=input_size, nc=nc, where=where
    )
    levels = [t.detach().to(torch.float32) for t in outputs]
    decoded, grids, raw, stride_col = [], [], [], []
    for t, s in zip(levels, strd, strict=True):
        dec, grid = _decode_level(t, s)
        decoded.append(dec)
        grids.append(grid)
        h, w = t.shape[2:]
        raw.append(t[:, :4].permute(0, 2, 3, 1).reshape(bs, h * w, 4))
        stride_col.append(torch.full((h * w,), s, dtype=torch.float32))
    grid = torch.cat(grids)
    return YoloxOutput(
        outputs=torch.cat(decoded, 1),
        raw_reg=torch.cat(raw, 1),
        x_shifts=grid[:, 0],
        y_shifts=grid[:, 1],
        expanded_strides=torch.cat(stride_col),
        level_shapes=shapes,
        strides=strd,
        input_size=size,
        batch_size=bs,
        nc=n_cls,
    )


def anchors(out: YoloxOutput) -> Anchors:
    """The anchor table: one anchor per cell, points at the cell centres (SimOTA's centre prior)."""
    return Anchors.grid(out.level_shapes, out.strides)


def boxes_xyxy(out: YoloxOutput) -> Tensor:
    """``(B, N, 4)`` decoded predicted boxes as xyxy input pixels (for reports)."""
    cxcy, wh = out.outputs[..., :2], out.outputs[..., 2:4]
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), -1)


def scores(out: YoloxOutput) -> LazyAnchorTensor:
    """``(B, N, nc)`` detection scores σ(cls)·σ(obj), as YOLOX ranks its detections; computed for single
    anchors on demand (see :mod:`yolodbg.heads.lazy`)."""
    o = out.outputs

    def row(b: int, a: int) -> Tensor:
        return o[b, a, 5:].sigmoid() * o[b, a, 4:5].sigmoid()

    return LazyAnchorTensor(
        (out.batch_size, o.shape[1], out.nc), row, lambda: o[:, :, 5:].sigmoid() * o[:, :, 4:5].sigmoid()
    )


def validator_detections(levels: Any, strides: tuple[float, ...], pp: PostProcess) -> list[Detections]:
    """YOLOX 0.3.0 as its COCO evaluator runs it: ``YOLOXHead`` in eval mode, then ``postprocess``.

    Per level ``cat(reg, σ(obj), σ(cls))`` (each sigmoid on its own map, as the head computes it),
    levels flattened and concatenated, ``xy = (t + cell) · stride``, ``wh = exp(t) · stride``;
    corners from centre/size; best class per box; kept when ``σ(obj) · σ(cls) ≥ conf``; torchvision's
    ``batched_nms`` (its coordinate-offset trick, or one NMS per class above 1000 boxes). Every
    step uses the same operations on tensors of the same layout as YOLOX, so the values are its own.
    """
    maps = []
    for t in levels:
        t = t.detach().float()
        maps.append(
            torch.cat([t[:, :4], t[:, 4:5].contiguous().sigmoid(), t[:, 5:].contiguous().sigmoid()], 1)
        )
    hw = [m.shape[-2:] for m in maps]
    outputs = torch.cat([m.flatten(start_dim=2) for m in maps], dim=2).permute(0, 2, 1)
    grids, strides_t = [], []
    for (h, w), s in zip(hw, strides, strict=True):
        yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack((xv, yv), 2).view(1, -1, 2)
        grids.append(grid)
        strides_t.append(torch.full((*grid.shape[:2], 1), s))
    grid, stride = torch.cat(grids, 1).float(), torch.cat(strides_t, 1).float()
    outputs[..., :2] = (outputs[..., :2] + grid) * stride
    outputs[..., 2:4] = torch.exp(outputs[..., 2:4]) * stride
    corner = outputs.new(outputs.shape)
    corner[:, :, 0] = outputs[:, :, 0] - outputs[:, :, 2] / 2
    corner[:, :, 1] = outputs[:, :, 1] - outputs[:, :, 3] / 2
    corner[:, :, 2] = outputs[:, :, 0] + outputs[:, :, 2] / 2
    corner[:, :, 3] = outputs[:, :, 1] + outputs[:, :, 3] / 2
    outputs[:, :, :4] = corner[:, :, :4]
    nc = outputs.shape[2] - 5
    dets = []
    for pred in outputs:
        class_conf, class_pred = torch.max(pred[:, 5 : 5 + nc], 1, keepdim=True)
        keep = (pred[:, 4] * class_conf.squeeze(1) >= pp.conf).squeeze()
        det = torch.cat((pred[:, :5], class_conf, class_pred.float()), 1)[keep.view(-1)]
        score = det[:, 4] * det[:, 5]
        kept = batched_nms(det[:, :4], score, det[:, 6], pp.iou)
        det, score = det[kept], score[kept]
        dets.append(Detections(det[:, :4], score, det[:, 6].long()))
    return dets


def parse_bundle(bundle: Any) -> YoloxOutput:
    """:func:`parse` with what a loaded bundle records (strides, input size, ``--nc``)."""
    return parse(bundle.outputs, **recorded(bundle))


def detections(
    bundle: Any, pp: PostProcess, parsed: YoloxOutput | None = None, probs: Tensor | None = None
) -> list[Detections] | None:
    """The evaluator's detections from the raw maps (None without a parsed output: the replay's boxes are
    used). ``probs`` is not read: the head's eval outputs are decoded from the maps as YOLOX does."""
    return validator_detections(bundle.outputs, parsed.strides, pp) if parsed is not None else None


def recognise(outputs: Any) -> Recognition | None:
    """Per-level ``(B, 5 + nc, H, W)`` maps are YOLOX's, or the older Ultralytics output."""
    if level_map_shapes(outputs) is not None:
        return Recognition(False, "a list of per-level (B, C, H, W) tensors", "raw YOLOX outputs")
    return None


def level_shapes(outputs: Any) -> tuple[tuple[int, int], ...] | None:
    """``(H, W)`` of every level of per-level ``(B, C, H, W)`` maps, or None if malformed."""
    return level_map_shapes(outputs)
