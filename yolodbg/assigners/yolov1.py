"""YOLOv1 assignment: the cell holding a GT's centre, and in it the predictor of highest IoU.

Rules (YOLOv1 paper; darknet ``detection_layer.c`` / ``fill_truth_region`` where the paper is silent):

- **Cell**: ``col = floor(cx * Sw)``, ``row = floor(cy * Sh)`` of the normalised centre, clamped to
  ``0..S-1`` (a centre at exactly 1.0 falls in the last cell; a centre on an inner border falls in
  the cell to its right/below). Targets: ``x = cx*Sw - col``, ``y = cy*Sh - row``, ``w``, ``h`` as given.
- **One object per cell**: when several GTs of an image have their centre in the same cell, one wins
  (``conflict``): ``first`` = lowest GT row (darknet skips a cell that already holds a truth; its
  loader shuffles the boxes first), ``last`` = highest row (a label grid written in a loop without a
  check), ``largest`` = largest w·h (ties: lowest row). The others get no predictor: reason
  ``cell_taken`` naming the winner.
- **Responsible predictor**: among the cell's ``nb`` predictors the one whose box has the highest
  IoU with the GT (first on ties, so predictor 0 when none overlaps). ``zero_iou=rmse`` follows
  darknet instead when no predictor overlaps: the smallest RMSE of (cx, cy, w, h), first on ties.
- IoU is computed in input pixels between the GT and the predicted box
  ``((col + x)/Sw, (row + y)/Sh, w, h)``; a negative predicted w or h counts as 0 (an empty box,
  IoU 0). Every quantity here is detached: the assignment carries no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from yolodbg.forms import YOLOV1_CONFLICT_RULES as CONFLICT_RULES
from yolodbg.forms import YOLOV1_ZERO_IOU_RULES as ZERO_IOU_RULES
from yolodbg.groundtruth import Targets
from yolodbg.heads.yolov1 import anchor_index, cxcywh_to_pixels_xyxy
from yolodbg.result import GtReason


@dataclass(frozen=True)
class Yolov1Assignment:
    """Who is responsible for what. ``M`` GT rows, ``N = nb*Sh*Sw`` anchors per image."""

    row: Tensor  # (M,) long grid row of each GT centre
    col: Tensor  # (M,) long grid column
    target: Tensor  # (M, 4) float32 regression targets: x, y in the cell, w, h of the image
    owner: Tensor  # (M,) long global row of the GT that holds this GT's cell (itself if it won)
    won: Tensor  # (M,) bool: the GT holds its cell (owner == itself)
    iou: Tensor  # (M, nb) IoU of each predictor of the GT's cell with the GT (pixels, detached)
    slot: Tensor  # (M,) long responsible predictor of the cell (computed for every GT; used for winners)
    rmse_fallback: Tensor  # (M,) bool: slot chosen by smallest RMSE (zero_iou=rmse and no predictor overlaps)
    anchor: Tensor  # (M,) long anchor index of the responsible predictor
    fg: Tensor  # (B, N) bool: responsible for some GT
    gt_of_anchor: Tensor  # (B, N) long global GT row of each anchor, -1 for background
    conflict: str
    zero_iou: str

    @property
    def responsible_iou(self) -> Tensor:
        """(M,) IoU of the responsible predictor with its GT."""
        return self.iou.gather(1, self.slot.unsqueeze(1)).squeeze(1) if len(self.slot) else self.iou[:, 0]


def gt_cells(bboxes: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """``(M, 4)`` normalised cx, cy, w, h -> ``(row (M,), col (M,), target (M, 4))``, float32 as stored."""
    sh, sw = grid
    gx, gy = bboxes[:, 0] * sw, bboxes[:, 1] * sh
    col = gx.floor().long().clamp(0, sw - 1)
    row = gy.floor().long().clamp(0, sh - 1)
    target = torch.stack((gx - col, gy - row, bboxes[:, 2], bboxes[:, 3]), -1)
    return row, col, target


def cell_winners(key: Tensor, area: Tensor, rule: str) -> Tensor:
    """``(M,)`` global row of the GT that wins each GT's cell (``key`` = image·cells + cell)."""
    m = key.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=torch.long)
    if rule == "largest":
        by_area = torch.sort(-area, stable=True).indices  # larger first, ties by row
        order = by_area[torch.sort(key[by_area], stable=True).indices]
    else:
        order = torch.sort(key, stable=True).indices  # rows ascending inside each cell
    k = key[order]
    one = torch.ones(1, dtype=torch.bool)
    change = k[1:] != k[:-1]
    head = torch.cat((change, one)) if rule == "last" else torch.cat((one, change))  # the winner of each run
    winner_of_key = torch.full((int(key.max()) + 1,), -1, dtype=torch.long)
    winner_of_key[k[head]] = order[head]
    return winner_of_key[key]


def pairwise_cell_iou(pred_xyxy: Tensor, gt_xyxy: Tensor) -> Tensor:
    """Plain IoU, ``(M, nb, 4)`` x ``(M, 4)`` xyxy pixels -> ``(M, nb)``; 0 where the union is empty."""
    g = gt_xyxy.unsqueeze(1)
    iw = (torch.minimum(pred_xyxy[..., 2], g[..., 2]) - torch.maximum(pred_xyxy[..., 0], g[..., 0])).clamp(
        min=0
    )
    ih = (torch.minimum(pred_xyxy[..., 3], g[..., 3]) - torch.maximum(pred_xyxy[..., 1], g[..., 1])).clamp(
        min=0
    )
    inter = iw * ih
    area_p = (pred_xyxy[..., 2] - pred_xyxy[..., 0]) * (pred_xyxy[..., 3] - pred_xyxy[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    union = area_p + area_g - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter)
    )


def assign(
    pred_cxcywh: Tensor,
    targets: Targets,
    input_size: tuple[int, int],
    conflict: str = "first",
    zero_iou: str = "first",
) -> Yolov1Assignment:
    """Assign every GT row to its cell and a responsible predictor.

    ``pred_cxcywh`` ``(B, Sh, Sw, nb, 4)``: predicted boxes, image-relative cx, cy, w, h.
    """
    if conflict not in CONFLICT_RULES or zero_iou not in ZERO_IOU_RULES:
        raise ValueError(f"conflict must be one of {CONFLICT_RULES}, zero_iou one of {ZERO_IOU_RULES}")
    pred = pred_cxcywh.detach()
    bs, sh, sw, nb, _ = pred.shape
    n = nb * sh * sw
    m = len(targets)
    bidx = targets.batch_idx
    bboxes = targets.bboxes.to(pred.dtype)
    row, col, target = gt_cells(bboxes, (sh, sw))
    key = bidx * (sh * sw) + row * sw + col
    owner = cell_winners(key, bboxes[:, 2] * bboxes[:, 3], conflict)
    won = owner == torch.arange(m)

    cand = pred[bidx, row, col]  # (M, nb, 4)
    iou = pairwise_cell_iou(
        cxcywh_to_pixels_xyxy(cand, input_size), cxcywh_to_pixels_xyxy(bboxes, input_size)
    )
    slot = iou.argmax(1) if m else torch.zeros(0, dtype=torch.long)  # first maximum on ties
    rmse_fallback = torch.zeros(m, dtype=torch.bool)
    if zero_iou == "rmse" and m:
        rmse = (cand - bboxes.unsqueeze(1)).pow(2).sum(-1).sqrt()  # (M, nb)
        rmse_fallback = iou.amax(1) <= 0
        slot = torch.where(rmse_fallback, rmse.argmin(1), slot)
    anchor = anchor_index(slot, row, col, (sh, sw))

    fg = torch.zeros(bs, n, dtype=torch.bool)
    gt_of_anchor = torch.full((bs, n), -1, dtype=torch.long)
    rows_won = won.nonzero().flatten()
    fg[bidx[rows_won], anchor[rows_won]] = True
    gt_of_anchor[bidx[rows_won], anchor[rows_won]] = rows_won
    return Yolov1Assignment(
        row,
        col,
        target,
        owner,
        won,
        iou,
        slot,
        rmse_fallback & won,
        anchor,
        fg,
        gt_of_anchor,
        conflict,
        zero_iou,
    )


def reasons(a: Yolov1Assignment, targets: Targets) -> dict[int, GtReason]:
    """Reason codes: ``cell_taken`` (no predictor: another GT holds the cell, ``other_gt``) and
    ``zero_iou`` (its responsible predictor does not overlap it, so with ``conf_target=iou`` the
    confidence is pushed to 0 on the very predictor that should find it)."""
    out: dict[int, GtReason] = {}
    rule = {
        "first": "the lower GT row wins",
        "last": "the higher GT row wins",
        "largest": "the larger box wins",
    }
    for r in range(len(targets)):
        cell = f"({int(a.col[r])}, {int(a.row[r])})"
        if not bool(a.won[r]):
            other = int(a.owner[r])
            out[r] = GtReason(
                "cell_taken",
                f"its centre falls in cell {cell} (col, row), which GT row {other} holds: one object per "
                f"cell, "
                f"{rule[a.conflict]} (assigner.conflict={a.conflict})",
                other_gt=other,
            )
        elif float(a.iou[r].max()) <= 0:
            how = "smallest RMSE" if bool(a.rmse_fallback[r]) else "first-predictor tie rule"
            out[r] = GtReason(
                "zero_iou",
                f"none of the {a.iou.shape[1]} predictors of cell {cell} overlaps it; predictor "
                f"{int(a.slot[r])} is responsible by the {how}",
            )
    return out
