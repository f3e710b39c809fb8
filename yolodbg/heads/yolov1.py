"""YOLOv1 head (Redmon et al., CVPR 2016): raw ``(B, S, S, nb*5 + C)`` output -> per-predictor tensors.

Layout of one cell's last dimension: ``nb`` blocks of ``(x, y, w, h, conf)``, then ``C`` class scores,
all used as the network gives them (no activation). ``x, y`` are the box centre's offset inside its
cell (0..1 of the cell's width/height), ``w, h`` are relative to the whole input image.

Anchor order: predictor ``j`` of the cell at (row, col) is anchor ``j*S*S + row*S + col``. This is the
order of :meth:`Anchors.grid` with ``slots=nb`` (slot-major per level), so ``(B, S, S, nb, ...)``
tensors are permuted to ``(B, nb, S, S, ...)`` before they are flattened (:func:`flatten_predictors`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from yolodbg.anchors import Anchors
from yolodbg.errors import BundleError
from yolodbg.heads.registry import Recognition, recorded

PAPER_GRID, PAPER_BOXES, PAPER_CLASSES = 7, 2, 20
DEFAULT_CELL_PX = 64  # input pixels per cell when nothing says otherwise (448 / 7, the paper's input)


@dataclass(frozen=True)
class Yolov1Output:
    """A validated YOLOv1 output, split into its parts (views of the raw tensor, not copies)."""

    raw: Tensor  # (B, Sh, Sw, nb*5 + C) as given
    boxes: Tensor  # (B, Sh, Sw, nb, 4) raw x, y (cell-relative), w, h (image-relative)
    conf: Tensor  # (B, Sh, Sw, nb) raw confidences
    cls: Tensor  # (B, Sh, Sw, C) raw class scores, one set per cell
    grid: tuple[int, int]  # (Sh, Sw)
    nb: int  # predictors (boxes) per cell
    nc: int  # classes
    input_size: tuple[int, int]  # (H, W) input pixels
    batch_size: int
    layout_note: str  # how nb and C were decided, for the report

    @property
    def num_anchors(self) -> int:
        return self.nb * self.grid[0] * self.grid[1]


def _split(last: int, nc: int | None, boxes_per_cell: int | None, where: str) -> tuple[int, int, str]:
    """``(nb, C, note)`` from the last dimension ``nb*5 + C``."""
    if nc is not None:
        nb, rest = divmod(last - nc, 5)
        if last - nc < 5 or rest:
            raise BundleError(
                f"{where}: the last dimension {last} does not split into nb*5 box values + {nc} classes; "
                "check --nc (or the bundle's category_ids)"
            )
        return nb, nc, f"{nb} boxes per cell from {last} values and {nc} classes"
    if boxes_per_cell is not None:
        c = last - 5 * boxes_per_cell
        if c < 1:
            raise BundleError(
                f"{where}: meta.boxes_per_cell {boxes_per_cell} leaves {c} class scores of {last} values; "
                "fix it"
            )
        return boxes_per_cell, c, f"{boxes_per_cell} boxes per cell from meta.boxes_per_cell"
    if last == PAPER_BOXES * 5 + PAPER_CLASSES:
        return PAPER_BOXES, PAPER_CLASSES, f"{last} values per cell read as the paper's 2 boxes + 20 classes"
    splits = ", ".join(f"{k} boxes + {last - 5 * k} classes" for k in range(1, 4) if last - 5 * k >= 1)
    raise BundleError(
        f"{where}: {last} values per cell are ambiguous ({splits or 'no valid split'}); pass --nc C "
        "(or save category_ids or meta.boxes_per_cell in the bundle)"
    )


def parse(
    outputs: Any,
    *,
    input_size: tuple[int, int] | None = None,
    strides: tuple[float, ...] | None = None,
    nc: int | None = None,
    category_ids: tuple[int, ...] | None = None,
    boxes_per_cell: int | None = None,
    where: str = "bundle",
) -> Yolov1Output:
    """Validate a YOLOv1 output ``(B, Sh, Sw, nb*5 + C)`` and split it.

    Classes come from ``nc`` (``--nc``), else from ``len(category_ids)``, else the number of boxes
    from ``boxes_per_cell``; a last dimension of 30 alone is read as the paper's 2 boxes + 20
    classes. The input size is ``input_size``, else grid × ``strides[0]``, else 64 px per cell.
    """
    if not isinstance(outputs, Tensor) or outputs.ndim != 4:
        desc = f"tensor {tuple(outputs.shape)}" if isinstance(outputs, Tensor) else type(outputs).__name__
        raise BundleError(
            f"{where}: a yolov1 output is one (B, S, S, nb*5 + C) tensor, got {desc}; reshape a flat "
            "(B, S*S*(nb*5+C)) output with .view(B, S, S, -1) before saving"
        )
    if not outputs.is_floating_point():
        raise BundleError(f"{where}: outputs are {outputs.dtype}; expected floating point")
    bs, sh, sw, last = (int(v) for v in outputs.shape)
    if nc is None and category_ids is not None:
        nc = len(category_ids)
    nb, c, note = _split(last, nc, boxes_per_cell, where)
    if strides is not None and len(strides) != 1:
        raise BundleError(f"{where}: a yolov1 head has one level but {len(strides)} strides were given")
    if input_size is not None:
        size = (int(input_size[0]), int(input_size[1]))
    elif strides is not None:
        size = (round(sh * strides[0]), round(sw * strides[0]))
    else:
        size = (sh * DEFAULT_CELL_PX, sw * DEFAULT_CELL_PX)
        note += f"; input size not given, assumed {size[0]}x{size[1]} ({DEFAULT_CELL_PX} px per cell)"
    boxes_conf = outputs[..., : nb * 5].reshape(bs, sh, sw, nb, 5)
    return Yolov1Output(
        raw=outputs,
        boxes=boxes_conf[..., :4],
        conf=boxes_conf[..., 4],
        cls=outputs[..., nb * 5 :],
        grid=(sh, sw),
        nb=nb,
        nc=c,
        input_size=size,
        batch_size=bs,
        layout_note=note,
    )


def flatten_predictors(t: Tensor) -> Tensor:
    """``(B, Sh, Sw, nb, ...)`` -> ``(B, nb*Sh*Sw, ...)``, anchor index ``slot*Sh*Sw + row*Sw + col``."""
    b, sh, sw, nb = t.shape[:4]
    return t.movedim(3, 1).reshape(b, nb * sh * sw, *t.shape[4:])


def per_cell_to_anchors(t: Tensor, nb: int) -> Tensor:
    """``(B, Sh, Sw, ...)`` per-cell values -> ``(B, nb*Sh*Sw, ...)``, repeated for each predictor."""
    return flatten_predictors(t.unsqueeze(3).expand(*t.shape[:3], nb, *t.shape[3:]))


def anchor_index(slot: Tensor, row: Tensor, col: Tensor, grid: tuple[int, int]) -> Tensor:
    """Anchor index of predictor ``slot`` of cell (row, col), matching :func:`flatten_predictors`."""
    return slot * (grid[0] * grid[1]) + row * grid[1] + col


def decode_cxcywh(out: Yolov1Output) -> Tensor:
    """``(B, Sh, Sw, nb, 4)`` predicted boxes, image-relative cx, cy, w, h (w, h as predicted, maybe < 0)."""
    sh, sw = out.grid
    rows = torch.arange(sh, dtype=out.boxes.dtype).view(1, sh, 1, 1)
    cols = torch.arange(sw, dtype=out.boxes.dtype).view(1, 1, sw, 1)
    x, y, w, h = out.boxes.unbind(-1)
    return torch.stack(((cols + x) / sw, (rows + y) / sh, w, h), -1)


def cxcywh_to_pixels_xyxy(cxcywh: Tensor, input_size: tuple[int, int]) -> Tensor:
    """Image-relative ``(..., 4)`` cx, cy, w, h -> xyxy input pixels; a w, h < 0 counts as 0 (empty box)."""
    h_in, w_in = input_size
    cx, cy = cxcywh[..., 0] * w_in, cxcywh[..., 1] * h_in
    half_w, half_h = cxcywh[..., 2].clamp(min=0) * w_in / 2, cxcywh[..., 3].clamp(min=0) * h_in / 2
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), -1)


def anchors(out: Yolov1Output) -> Anchors:
    """The anchor table: one level, ``nb`` slots per cell, anchor points at the cell centres (pixels)."""
    sh, sw = out.grid
    sy, sx = out.input_size[0] / sh, out.input_size[1] / sw
    table = Anchors.grid(((sh, sw),), (sy,), slots=out.nb)
    if sx == sy:
        return table
    points = (table.cell.to(torch.float32) + 0.5) * torch.tensor([sx, sy])  # non-square cells
    return replace(table, points=points)


def parse_bundle(bundle: Any) -> Yolov1Output:
    """:func:`parse` with what a loaded bundle records (input size, strides, ``--nc``, category ids and
    ``meta.boxes_per_cell``)."""
    per_cell = bundle.meta.get("boxes_per_cell")
    if per_cell is not None and (not isinstance(per_cell, int) or per_cell < 1):
        raise BundleError(
            f"{bundle.source}: meta.boxes_per_cell is {per_cell!r}; expected a positive integer"
        )
    return parse(
        bundle.outputs, category_ids=bundle.category_ids, boxes_per_cell=per_cell, **recorded(bundle)
    )


def recognise(outputs: Any) -> Recognition | None:
    """One ``(B, S, S, C)`` tensor (no levels) is YOLOv1's grid."""
    return Recognition() if isinstance(outputs, Tensor) and outputs.ndim == 4 else None
