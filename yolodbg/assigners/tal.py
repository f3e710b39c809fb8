"""Task-aligned assignment as Ultralytics' ``TaskAlignedAssigner`` (8.4.x) does it.

Steps (docs/losses.md, task-aligned assignment), each kept as a named tensor so reports can show why a box got the
positives it got:

A. candidates: anchor centres strictly inside the GT box, sides below ``min_side`` floored
   to ``min_side`` around the centre (the "small-box floor");
B. alignment metric ``t = score^alpha * max(CIoU, 0)^beta`` on candidate pairs;
C. the ``topk`` anchors of largest t per GT (over all anchors), kept if they are candidates;
D. an anchor claimed by several GTs goes to the GT of largest CIoU (over all GTs);
E. optionally, keep only the ``topk2`` best of each GT's positives (end-to-end one-to-one);
G. soft targets ``t̂ = t * max_pos(u) / (max_pos(t) + eps)`` per GT.

Shapes: B images, M GT slots per image (padded), N anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from yolodbg.geometry import bbox_iou, cxcywh_to_xyxy, xyxy_to_cxcywh


@dataclass(frozen=True)
class TalParams:
    topk: int = 10
    alpha: float = 0.5
    beta: float = 6.0
    eps: float = 1e-9
    topk2: int | None = None  # None = topk (no second filter)
    min_side: float | None = None  # small-box floor; None = stride[1] (stride[0] for one level); 0 = off


@dataclass(frozen=True)
class TalAssignment:
    """Every intermediate of the assignment; the first five are what the loss consumes."""

    fg: Tensor  # (B, N) bool, anchor is a positive
    gt_slot: Tensor  # (B, N) long, assigned GT slot (0 for background, as the framework leaves it)
    target_bboxes: Tensor  # (B, N, 4) xyxy pixels of the assigned GT (GT 0's box on background)
    target_scores: Tensor  # (B, N, nc) soft one-hot target t̂
    target_weight: Tensor  # (B, N) t̂ = target_scores summed over classes
    candidates: Tensor  # (B, M, N) bool, step A (with the floor)
    overlaps: Tensor  # (B, M, N) u = max(CIoU(gt, pred), 0) on candidate pairs, else 0
    align_metric: Tensor  # (B, M, N) t on candidate pairs, else 0
    selected: Tensor  # (B, M, N) bool, step C: in the GT's top-k and a candidate
    mask_pos: Tensor  # (B, M, N) bool, final positives per GT after D and E
    min_side: float
    sparse: bool = True  # target_scores is +0 on every background anchor (False: non-finite values spread)
    pairs: tuple[Tensor, Tensor, Tensor] | None = None  # (b, m, n) indices of the True entries of candidates


def candidates_in_gts(
    points: Tensor,
    gt_bboxes: Tensor,
    mask_gt: Tensor,
    min_side: float,
    eps: float = 1e-9,
    grid: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Step A: ``(N, 2)`` anchor centres × ``(B, M, 4)`` GT boxes -> ``(B, M, N)`` bool.

    Valid GTs go through xyxy -> cxcywh -> xyxy (the round trip can move an edge by one ulp),
    sides smaller than ``min_side`` become ``min_side``; the test is strict (> eps).
    ``grid``: per level the ``(W,)`` x and ``(H,)`` y of its cell centres, when ``points`` is their
    row-major mesh level after level; then each comparison runs once per column and per row
    (the same subtractions and tests), not once per anchor.
    """
    xywh = xyxy_to_cxcywh(gt_bboxes)
    small = (xywh[..., 2:] < min_side) & mask_gt.bool()
    wh = torch.where(small, torch.tensor(min_side, dtype=xywh.dtype), xywh[..., 2:])
    boxes = cxcywh_to_xyxy(torch.cat((xywh[..., :2], wh), -1))
    lt, rb = boxes.unsqueeze(2).chunk(2, 3)  # (B, M, 1, 2)
    if grid is not None:
        levels = []
        for xs, ys in grid:
            in_x = (xs - lt[..., 0] > eps) & (rb[..., 0] - xs > eps)  # (B, M, W)
            in_y = (ys - lt[..., 1] > eps) & (rb[..., 1] - ys > eps)  # (B, M, H)
            levels.append((in_y.unsqueeze(-1) & in_x.unsqueeze(-2)).flatten(-2))
        return torch.cat(levels, -1)
    mask = points[:, 0] - lt[..., 0] > eps
    mask &= points[:, 1] - lt[..., 1] > eps
    mask &= rb[..., 0] - points[:, 0] > eps
    mask &= rb[..., 1] - points[:, 1] > eps
    return mask


def _min_side(params: TalParams, strides: tuple[float, ...]) -> float:
    """The small-box floor: ``params.min_side``, by default the second level's stride (the only one's)."""
    if params.min_side is not None:
        return params.min_side
    return float(strides[1] if len(strides) > 1 else strides[0])


def _empty_assignment(scores: Tensor, gt_bboxes: Tensor, min_side: float) -> TalAssignment:
    """No GT slot in the batch: every anchor is background, every per-GT tensor has M = 0."""
    bs, n_anchors, _ = scores.shape
    empty = torch.zeros(bs, 0, n_anchors, dtype=torch.bool)
    return TalAssignment(
        fg=torch.zeros(bs, n_anchors, dtype=torch.bool),
        gt_slot=torch.zeros(bs, n_anchors, dtype=torch.long),
        target_bboxes=torch.zeros(bs, n_anchors, 4, dtype=gt_bboxes.dtype),
        target_scores=torch.zeros_like(scores),
        target_weight=torch.zeros(bs, n_anchors, dtype=scores.dtype),
        candidates=empty,
        overlaps=empty.to(gt_bboxes.dtype),
        align_metric=empty.to(scores.dtype),
        selected=empty,
        mask_pos=empty,
        min_side=min_side,
    )


def alignment_metric(
    scores: Tensor,
    pred_bboxes: Tensor,
    gt_labels: Tensor,
    gt_bboxes: Tensor,
    pair_mask: Tensor,
    params: TalParams,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """Step B (``get_box_metrics``): CIoU overlaps and ``t`` on candidate pairs of valid GTs only.

    Returns ``(overlaps, align_metric)`` as dense ``(B, M, N)`` (0 off the pairs) and the pair indices.
    """
    bs, n_max, n_anchors = pair_mask.shape
    b_idx, g_idx, a_idx = pair_mask.nonzero(as_tuple=True)
    pair_scores = scores[b_idx, a_idx, gt_labels[b_idx, g_idx, 0].long()]
    pair_overlaps = bbox_iou(gt_bboxes[b_idx, g_idx], pred_bboxes[b_idx, a_idx], "ciou").clamp(0)
    pair_align = pair_scores.pow(params.alpha) * pair_overlaps.pow(params.beta)
    overlaps = torch.zeros(bs, n_max, n_anchors, dtype=pair_overlaps.dtype)
    align_metric = torch.zeros(bs, n_max, n_anchors, dtype=pair_align.dtype)
    overlaps[b_idx, g_idx, a_idx] = pair_overlaps
    align_metric[b_idx, g_idx, a_idx] = pair_align
    return overlaps, align_metric, (b_idx, g_idx, a_idx)


def select_topk(align_metric: Tensor, in_gts: Tensor, valid: Tensor, topk: int) -> Tensor:
    """Step C (``select_topk_candidates``): each GT's ``topk`` anchors of largest t, kept if candidates.

    The top-k runs over all anchors; padded GTs select nothing (their indices are sent to anchor 0
    and an anchor counted twice is dropped, as the framework does).
    """
    topk_idx = torch.topk(align_metric, topk, dim=-1, largest=True).indices
    topk_idx = topk_idx.masked_fill(~valid.expand(-1, -1, topk), 0)
    count = torch.zeros(align_metric.shape, dtype=torch.int8)
    count.scatter_add_(-1, topk_idx, torch.ones_like(topk_idx, dtype=torch.int8))
    count = count.masked_fill(count > 1, 0)
    return count.bool() & in_gts & valid


def resolve_conflicts(selected: Tensor, overlaps: Tensor) -> Tensor:
    """Step D (``select_highest_overlaps``): an anchor claimed by several GTs goes to the GT of
    largest CIoU (over all GTs, not only the claimants)."""
    n_max = selected.shape[1]
    claimed = selected.sum(-2)
    multi = (claimed > 1).unsqueeze(1).expand(-1, n_max, -1)
    best_gt = overlaps.max(1).indices
    is_best = torch.zeros_like(selected).scatter_(1, best_gt.unsqueeze(1), True)
    return torch.where(multi, is_best, selected)


def second_topk(mask_pos: Tensor, align_metric: Tensor, topk2: int) -> Tensor:
    """Step E (the ``topk2`` filter of end-to-end heads): keep each GT's ``topk2`` best positives."""
    metric_pos = align_metric * mask_pos
    keep_idx = torch.topk(metric_pos, topk2, dim=-1, largest=True).indices
    keep = torch.zeros_like(mask_pos).scatter_(-1, keep_idx, True)
    return mask_pos & keep


def assigned_targets(gt_slot: Tensor, gt_labels: Tensor, gt_bboxes: Tensor) -> tuple[Tensor, Tensor]:
    """Step F (``get_targets``): label ``(B, N)`` and xyxy box ``(B, N, 4)`` of each anchor's assigned GT.

    Background anchors carry GT 0's values (slot 0), as the framework leaves them; later steps mask them.
    """
    bs, n_max = gt_bboxes.shape[:2]
    batch_off = torch.arange(bs, dtype=torch.long)[:, None] * n_max
    flat = gt_slot + batch_off
    labels = gt_labels.long().flatten()[flat].clamp(0)
    return labels, gt_bboxes.view(-1, 4)[flat]


def normalised_scores(
    align_metric: Tensor,
    overlaps: Tensor,
    mask_pos: Tensor,
    fg: Tensor,
    labels: Tensor,
    nc: int,
    eps: float,
) -> tuple[Tensor, Tensor, bool]:
    """Step G (the normalisation at the end of ``forward``): ``t̂ = t · max_pos(u) / (max_pos(t) + eps)``
    per GT over its final positives, placed on the assigned label.

    Returns ``(target_scores (B, N, nc), target_weight (B, N), sparse)``.
    """
    bs, n_anchors = fg.shape
    align_pos = align_metric * mask_pos
    max_align = align_pos.amax(dim=-1, keepdim=True)
    overlaps_pos = overlaps * mask_pos
    max_overlap = overlaps_pos.amax(dim=-1, keepdim=True)
    norm = (align_pos * max_overlap / (max_align + eps)).amax(-2).unsqueeze(-1)
    sparse = bool(torch.isfinite(norm).all())
    if sparse:
        # one_hot · norm without the dense product: norm ≥ 0, so every entry but the label's is +0,
        # and a row's sum over classes is its one value exactly
        b_fg, a_fg = fg.nonzero(as_tuple=True)
        target_scores = torch.zeros(bs, n_anchors, nc, dtype=norm.dtype)
        target_scores[b_fg, a_fg, labels[b_fg, a_fg]] = norm[b_fg, a_fg, 0]
        target_weight = torch.zeros(bs, n_anchors, dtype=norm.dtype)
        target_weight[b_fg, a_fg] = norm[b_fg, a_fg, 0]
    else:  # 0 · NaN is NaN: keep the framework's dense product so non-finite values spread as there
        one_hot = torch.zeros(bs, n_anchors, nc, dtype=torch.int8)
        one_hot.scatter_(2, labels.unsqueeze(-1), 1)
        target_scores = (one_hot * fg[:, :, None]) * norm
        target_weight = target_scores.sum(-1)
    return target_scores, target_weight, sparse


def assign(
    scores: Tensor,
    pred_bboxes: Tensor,
    points: Tensor,
    gt_labels: Tensor,
    gt_bboxes: Tensor,
    mask_gt: Tensor,
    strides: tuple[float, ...],
    params: TalParams = TalParams(),
    grid: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> TalAssignment:
    """Assign anchors to GTs.

    scores ``(B, N, nc)`` probabilities; pred_bboxes ``(B, N, 4)`` and points ``(N, 2)`` in input
    pixels; gt_labels ``(B, M, 1)``; gt_bboxes ``(B, M, 4)`` xyxy pixels; mask_gt ``(B, M, 1)``.
    ``grid``: the points as per-level axes (see :func:`candidates_in_gts`), a shortcut.
    Only the candidate anchors' rows of pred_bboxes are read (``pred_bboxes[b, a]`` with index
    vectors), so it can be a :class:`~yolodbg.heads.lazy.LazyAnchorTensor` that decodes just those.
    """
    nc = scores.shape[2]
    n_max = gt_bboxes.shape[1]
    min_side = _min_side(params, strides)
    if n_max == 0:
        return _empty_assignment(scores, gt_bboxes, min_side)
    valid = mask_gt.bool()  # (B, M, 1)
    in_gts = candidates_in_gts(points, gt_bboxes, mask_gt, min_side, grid=grid)
    overlaps, align_metric, pairs = alignment_metric(
        scores, pred_bboxes, gt_labels, gt_bboxes, in_gts & valid, params
    )
    selected = select_topk(align_metric, in_gts, valid, params.topk)
    mask_pos = resolve_conflicts(selected, overlaps)
    topk2 = params.topk2 or params.topk
    if topk2 != params.topk:
        mask_pos = second_topk(mask_pos, align_metric, topk2)

    fg_count, gt_slot = mask_pos.to(torch.int8).max(-2)
    fg = fg_count.bool()

    labels, target_bboxes = assigned_targets(gt_slot, gt_labels, gt_bboxes)

    target_scores, target_weight, sparse = normalised_scores(
        align_metric, overlaps, mask_pos, fg, labels, nc, params.eps
    )
    return TalAssignment(
        fg=fg,
        gt_slot=gt_slot,
        target_bboxes=target_bboxes,
        target_scores=target_scores,
        target_weight=target_weight,
        candidates=in_gts & valid,
        overlaps=overlaps,
        align_metric=align_metric,
        selected=selected,
        mask_pos=mask_pos,
        min_side=min_side,
        sparse=sparse,
        pairs=pairs,
    )
