"""One branch of Ultralytics' ``v8DetectionLoss`` (8.4.x), unreduced first.

Used by the ``yolov8`` recipe (one branch) and by end-to-end recipes (two branches). The
logged items are reduced exactly as the framework reduces them (same dtype, same order of
operations, one ``sum()`` per term) so they match the trainer's log to the bit; the same
per-element values go into the ledger, which sums them in float64.

Loss variants (``box=siou``, ``cls=varifocal``, ...) replace the per-element box or class values
by a function of :mod:`yolodbg.terms` and keep everything else (assignment, weights t̂,
normaliser S, gains); the default forms (CIoU, BCE) never leave the framework's arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg import terms
from yolodbg.assigners.tal import TalAssignment, TalParams, assign, candidates_in_gts
from yolodbg.forms import TermForms
from yolodbg.geometry import IOU_KINDS, bbox_iou, cxcywh_to_xyxy
from yolodbg.groundtruth import Targets
from yolodbg.heads.lazy import LazyAnchorTensor
from yolodbg.heads.ultralytics import (
    Branch,
    UltralyticsOutput,
    anchor_axes,
    decode_distances,
    decode_rows,
    dist_to_xyxy,
    make_anchors,
)
from yolodbg.result import LossResult


@dataclass(frozen=True)
class Gains:
    box: float = 7.5
    cls: float = 0.5
    dfl: float = 1.5  # also the gain of the L1 term when reg_max is 1


@dataclass(frozen=True)
class BranchReplay:
    """The replay of one branch: items as logged, and per-anchor contributions (B, N) in float64."""

    items: dict[str, Tensor]  # "box", "cls", "dfl"|"l1": float32 scalars, gain-scaled (the logged items)
    per_anchor: dict[str, Tensor]  # same keys: (B, N) float64 contributions, gain-scaled and normalised
    assignment: TalAssignment
    gt_row_of_slot: Tensor  # (B, M) long: global target row of each GT slot, -1 for padding
    pred_boxes_px: LazyAnchorTensor  # (B, N, 4) xyxy input pixels, decoded where read
    scores: Tensor  # (B, N, nc) sigmoid
    target_scores_sum: float  # S, the batch-wide normaliser (after the clamp at 1)
    dfl_reach: float  # largest DFL target distance, grid units
    target_dist: Tensor  # (B, N, 4) unclamped ltrb target distances in grid units (garbage on background)
    box_iou_px: Tensor  # (B, N) plain IoU of predicted and assigned GT box (0 on background)


def gt_slots(targets: Targets, imgsz: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Targets -> ``(gt_labels (B,M,1), gt_bboxes (B,M,4) xyxy px, mask_gt (B,M,1), row_of_slot (B,M))``.

    As ``v8DetectionLoss.preprocess``: rows placed by their order inside their image, scaled by
    ``(W, H, W, H)`` of the input (in the prediction dtype), then cxcywh -> xyxy; a slot is
    valid when its four pixel coordinates sum to more than 0.
    """
    bs = targets.batch_size
    m = len(targets)
    if m == 0:
        z = torch.zeros(bs, 0, 1)
        return z, torch.zeros(bs, 0, 4), z, torch.zeros(bs, 0, dtype=torch.long)
    counts = torch.bincount(targets.batch_idx, minlength=bs)
    n_max = int(counts.max())
    local = targets.local_index()
    out = torch.zeros(bs, n_max, 5)
    out[targets.batch_idx, local, 0] = targets.cls.to(torch.float32)
    out[targets.batch_idx, local, 1:5] = targets.bboxes
    scale = imgsz[[1, 0, 1, 0]]
    out[..., 1:5] = cxcywh_to_xyxy(out[..., 1:5] * scale)
    row_of_slot = torch.full((bs, n_max), -1, dtype=torch.long)
    row_of_slot[targets.batch_idx, local] = torch.arange(m)
    labels, boxes = out.split((1, 4), 2)
    mask_gt = (boxes.sum(2, keepdim=True) > 0).to(boxes.dtype)
    return labels, boxes, mask_gt, row_of_slot


def _lazy_pred_boxes(
    branch: Branch, points: Tensor, stride_t: Tensor, px_dtype: torch.dtype
) -> tuple[LazyAnchorTensor, Callable[[Tensor, Tensor], Tensor]]:
    """The predicted boxes (``bbox_decode``), decoded only where read.

    Returns the ``(B, N, 4)`` xyxy input-pixel boxes as a lazy tensor (the assigner reads its
    candidates, the report a few background anchors) and the decoder of grid-unit rows (the
    positives' boxes for the loss). The framework decodes every anchor, with the same per-row arithmetic.
    """

    def grid_rows(b: Tensor, a: Tensor) -> Tensor:
        return dist_to_xyxy(decode_rows(branch, b, a), points[a])

    def px_rows(b: Tensor, a: Tensor) -> Tensor:
        return (grid_rows(b, a).detach() * stride_t[a]).to(px_dtype)

    def px_full() -> Tensor:
        return (dist_to_xyxy(decode_distances(branch), points).detach() * stride_t).to(px_dtype)

    shape = (branch.pred_scores.shape[0], branch.pred_scores.shape[1], 4)
    return LazyAnchorTensor(shape, None, px_full, rows=px_rows), grid_rows


def _cls_elements(
    forms: TermForms,
    pred_scores: Tensor,
    target_scores: Tensor,
    fgi: tuple[Tensor, Tensor] | None,
    class_weights: Tensor | None,
) -> Tensor:
    """The class term per element ``(B, N, nc)`` (``bce(pred_scores, target_scores)``, weighted by class).

    ``fgi``: the foreground indices when the targets are +0 everywhere else (the BCE shortcut), else None.
    """
    if forms.cls == "bce":  # the framework's own op
        cls_el = _bce(pred_scores, target_scores, fgi)
    else:
        cls_el = terms.cls_loss(forms.cls, pred_scores, target_scores, forms.cls_gamma, forms.cls_alpha)
    if class_weights is not None:  # bce_loss *= class_weights.view(1, 1, -1)
        cls_el = cls_el * class_weights.to(cls_el.dtype).view(1, 1, -1)
    return cls_el


def _box_elements(forms: TermForms, pred_fg: Tensor, target_fg: Tensor, weight_fg: Tensor) -> Tensor:
    """The box term of each positive (``BboxLoss``: ``(1 - IoU) * weight``), grid units."""
    if forms.box in IOU_KINDS:  # the framework's own arithmetic
        iou_fg = bbox_iou(pred_fg, target_fg, forms.box)
        return (1.0 - iou_fg) * weight_fg
    # grid units of each anchor's level, like the framework's CIoU
    return terms.box_loss(forms.box, pred_fg, target_fg, forms.box_beta) * weight_fg


def _dist_elements(
    branch: Branch,
    target_dist: Tensor,
    fgi: tuple[Tensor, Tensor],
    weight_fg: Tensor,
    stride_t: Tensor,
    imgsz: Tensor,
) -> tuple[Tensor, str, float]:
    """The distance term of each positive (``BboxLoss``): DFL when ``reg_max > 1``, else L1.

    Returns ``(values, "dfl" | "l1", reach)``: DFL targets are clamped to the reach
    ``reg_max - 1 - 0.01`` (grid units); the L1 form (no distribution) runs on distances
    normalised by the input size and has no reach.
    """
    pred_distri = branch.pred_dist
    if branch.reg_max > 1:
        reach = branch.reg_max - 1 - 0.01
        tgt = target_dist[fgi].clamp(0, reach)
        logp = F.log_softmax(pred_distri[fgi].view(-1, branch.reg_max), dim=1)
        tl = tgt.long()
        tr = tl + 1
        wl = tr - tgt
        wr = 1 - wl
        side = (
            logp.gather(1, tl.view(-1, 1)).view(tl.shape) * wl
            + logp.gather(1, tr.view(-1, 1)).view(tl.shape) * wr
        )
        return -side.mean(-1) * weight_fg, "dfl", reach
    h, w = imgsz[0], imgsz[1]
    scale = torch.stack((w, h, w, h))
    tgt_n = target_dist[fgi] * stride_t[fgi[1]] / scale
    pred_n = pred_distri[fgi] * stride_t[fgi[1]] / scale
    return F.l1_loss(pred_n, tgt_n, reduction="none").mean(-1) * weight_fg, "l1", float("inf")


def replay_branch(
    out: UltralyticsOutput,
    branch: Branch,
    targets: Targets,
    tal: TalParams,
    gains: Gains,
    forms: TermForms | str = "ciou",
    class_weights: Tensor | None = None,
) -> BranchReplay:
    """Replay ``v8DetectionLoss`` on one branch; ``forms`` picks the box/class functions (a str = box IoU kind).

    ``class_weights``: ``(nc,)`` float32 factors of the class elements (the criterion's ``class_weights``,
    see :mod:`yolodbg.recipes.class_weights`), multiplied in before the sum as the framework does.
    The two steps of the framework's ``__call__``: the task-aligned assignment (:func:`_assign`),
    then the terms over it, each divided by the normaliser S (:func:`_terms`).
    """
    forms = TermForms(box=forms) if isinstance(forms, str) else forms
    st = _assign(out, branch, targets, tal)
    a = st.assignment
    s = a.target_scores.sum().clamp(min=1)
    fgi = a.fg.nonzero(as_tuple=True)  # indexing by these = by the mask (same rows, same order), one nonzero
    t = _terms(forms, branch, st, s, fgi, gains, class_weights)
    return BranchReplay(
        items=t.items,
        per_anchor=t.per_anchor,
        assignment=a,
        gt_row_of_slot=st.row_of_slot,
        pred_boxes_px=st.pred_px,
        scores=st.scores,
        target_scores_sum=float(s),
        dfl_reach=t.dfl_reach,
        target_dist=t.target_dist,
        box_iou_px=_box_iou_px(a.fg.shape, fgi, t.pred_fg, st.stride_t, a.target_bboxes),
    )


@dataclass(frozen=True)
class _Assigned:
    """One branch's task-aligned assignment and the anchor layout its terms read."""

    assignment: TalAssignment
    points: Tensor  # (N, 2) anchor points, grid units
    stride_t: Tensor  # (N, 1) stride of each anchor
    imgsz: Tensor  # (2,) the input size the loss derives (first level × first stride)
    row_of_slot: Tensor  # (B, M) global target row of each GT slot, -1 for padding
    scores: Tensor  # (B, N, nc) sigmoid of the class logits
    pred_px: LazyAnchorTensor  # (B, N, 4) xyxy input pixels, decoded where read
    grid_rows: Callable[[Tensor, Tensor], Tensor]  # (b, a) -> (K, 4) xyxy grid units of those anchors


def _assign(out: UltralyticsOutput, branch: Branch, targets: Targets, tal: TalParams) -> _Assigned:
    """The framework's setup (anchors, GT slots, sigmoid scores, decoded boxes) and TAL's assignment."""
    dtype = branch.pred_scores.dtype
    points, stride_t = make_anchors(out, dtype)
    imgsz = torch.tensor(out.level_shapes[0], dtype=dtype) * out.strides[0]
    gt_labels, gt_bboxes, mask_gt, row_of_slot = gt_slots(targets, imgsz)
    scores = branch.pred_scores.detach().sigmoid()
    pred_px, grid_rows = _lazy_pred_boxes(branch, points, stride_t, gt_bboxes.dtype)
    grid = anchor_axes(out, dtype)
    a = assign(scores, pred_px, points * stride_t, gt_labels, gt_bboxes, mask_gt, out.strides, tal, grid)
    return _Assigned(a, points, stride_t, imgsz, row_of_slot, scores, pred_px, grid_rows)


@dataclass(frozen=True)
class _Terms:
    """The three terms of one branch: logged items, per-anchor values, and what reports read of them."""

    items: dict[str, Tensor]
    per_anchor: dict[str, Tensor]
    pred_fg: Tensor  # (K, 4) predicted xyxy grid units of the positives
    target_dist: Tensor  # (B, N, 4) ltrb target distances, grid units
    dfl_reach: float


def _terms(
    forms: TermForms,
    branch: Branch,
    st: _Assigned,
    s: Tensor,
    fgi: tuple[Tensor, Tensor],
    gains: Gains,
    class_weights: Tensor | None,
) -> _Terms:
    """Class, box and DFL (or L1) terms in the framework's order, each summed once and divided by S."""
    a = st.assignment
    cls_el = _cls_elements(
        forms,
        branch.pred_scores,
        a.target_scores.to(branch.pred_scores.dtype),
        fgi if a.sparse else None,
        class_weights,
    )
    cls_item = cls_el.sum() / s

    weight = a.target_weight  # target_scores.sum(-1): (B, N), zero off the foreground
    target_grid = a.target_bboxes / st.stride_t
    pred_fg = st.grid_rows(*fgi)
    box_fg = _box_elements(forms, pred_fg, target_grid[fgi], weight[fgi])
    box_item = box_fg.sum() / s

    points = st.points
    target_dist = torch.cat((points - target_grid[..., :2], target_grid[..., 2:] - points), -1)
    dist_fg, dist_name, reach = _dist_elements(branch, target_dist, fgi, weight[fgi], st.stride_t, st.imgsz)
    dist_item = dist_fg.sum() / s

    items, per_anchor = _gained(
        gains, s, fgi, a.fg.shape, dist_name, (box_item, box_fg), (cls_item, cls_el), (dist_item, dist_fg)
    )
    return _Terms(items, per_anchor, pred_fg, target_dist, reach)


def _gained(
    gains: Gains,
    s: Tensor,
    fgi: tuple[Tensor, Tensor],
    shape: torch.Size,
    dist_name: str,
    box: tuple[Tensor, Tensor],
    cls: tuple[Tensor, Tensor],
    dist: tuple[Tensor, Tensor],
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The logged items (each term's sum over S times its gain, float32) and the same values per anchor
    ``(B, N)`` in float64 for the ledger. ``box``/``cls``/``dist``: (item, its elements)."""
    items = {"box": box[0] * gains.box, "cls": cls[0] * gains.cls, dist_name: dist[0] * gains.dfl}
    s64 = s.double()
    per_anchor = {
        "box": _scatter_fg(shape, fgi, box[1]) * gains.box / s64,
        "cls": cls[1].sum(-1).double() * gains.cls / s64,
        dist_name: _scatter_fg(shape, fgi, dist[1]) * gains.dfl / s64,
    }
    return items, per_anchor


def _box_iou_px(
    shape: torch.Size, fgi: tuple[Tensor, Tensor], pred_fg: Tensor, stride_t: Tensor, target_bboxes: Tensor
) -> Tensor:
    """``(B, N)`` plain IoU of each positive's predicted box with its GT's, in input pixels (0 on
    background): a report column, not part of the loss."""
    iou_px = torch.zeros(shape, dtype=target_bboxes.dtype)
    if fgi[0].numel():
        px_fg = (pred_fg.detach() * stride_t[fgi[1]]).to(target_bboxes.dtype)
        iou_px[fgi] = bbox_iou(px_fg, target_bboxes[fgi], "iou", eps=1e-9)
    return iou_px


def _bce(logits: Tensor, target: Tensor, fg: tuple[Tensor, Tensor] | Tensor | None) -> Tensor:
    """``binary_cross_entropy_with_logits(logits, target, reduction="none")``, bit for bit.

    torch computes it as ``(1 - t) * x - log_sigmoid(x)``; where t is +0 that is ``x - log_sigmoid(x)``
    exactly (``1 * x`` is x), so when only the foreground rows ``fg`` (a (B, N) mask or its
    indices) carry non-zero targets, the dense op runs only on those rows (a third less work on an 80-class head).
    ``tests/test_terms.py`` checks the identity on extreme and non-finite logits.
    """
    if fg is None or logits.requires_grad:
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    out = F.logsigmoid(logits)
    torch.sub(logits, out, out=out)
    out[fg] = F.binary_cross_entropy_with_logits(logits[fg], target[fg], reduction="none")
    return out


def _scatter_fg(shape: torch.Size, fg: tuple[Tensor, Tensor], values: Tensor) -> Tensor:
    out = torch.zeros(shape, dtype=torch.float64)
    out[fg] = values.detach().double()
    return out


def tal_reachable(result: LossResult, targets: Targets) -> Tensor:
    """``(M,)`` bool: the GT has an anchor centre inside its (floored) box — TAL's step A, pure geometry.

    The replay's own step A when the result carries it (``gt_reachable``); else worked out from the
    anchors and the recipe's ``assigner.min_side`` (default stride[1]).
    """
    if result.gt_reachable is not None:
        return result.gt_reachable
    m = len(targets)
    out = torch.zeros(m, dtype=torch.bool)
    if m == 0:
        return out
    anchors = result.anchors
    strides = anchors.strides
    min_side = result.params.get("assigner.min_side")
    if min_side is None:
        min_side = float(strides[1] if len(strides) > 1 else strides[0])
    imgsz = torch.tensor(anchors.level_shapes[0], dtype=torch.float32) * strides[0]
    _, gt_bboxes, mask_gt, row_of_slot = gt_slots(targets, imgsz)
    cand = candidates_in_gts(anchors.points.float(), gt_bboxes, mask_gt, min_side) & mask_gt.bool()
    valid = row_of_slot >= 0
    out[row_of_slot[valid]] = cand.any(-1)[valid]
    return out
