"""Inference decode and post-processing of a bundle, as the framework's validator does it.

Ultralytics (exact): boxes from the DFL expectation (a 1×1 convolution with weights 0..reg_max-1
over the softmax of the bins), ``dist2bbox`` around the cell centres as centre/size, times the
stride; class scores are sigmoids. Then the validator's NMS: candidates whose best class score
exceeds ``conf``, centre/size -> corners, one row per (box, class) with score > ``conf``
(multi-label), at most ``max_nms`` rows by score, class-aware greedy NMS (classes kept apart by
an offset of ``max_wh`` pixels, suppression when IoU > ``iou``), the first ``max_det`` kept. End-to-end
heads (YOLO26) decode corners on the one-to-one branch, take the top ``max_det`` (anchor, class)
pairs by score and keep those above ``conf`` — no NMS.

YOLOv5 (exact, 7.0): ``Detect``'s inference decode and ``val.py``'s ``non_max_suppression``
(:func:`yolodbg.heads.yolov5.validator_detections`). YOLOX (exact, 0.3.0): the head's eval outputs,
``decode_outputs`` and ``postprocess`` with torchvision's ``batched_nms``
(:func:`yolodbg.heads.yolox.validator_detections`). YOLOv1 has no framework to follow: the replay's
decoded boxes and scores go through the NMS above with the parameters its head family declares (a
note says so).

Each head family (:mod:`yolodbg.heads`) declares its decode and its validator defaults
(:class:`PostProcess`, in the torch-free :mod:`yolodbg.evaluate.postprocess`); this module holds
what they share (NMS, top-k) and the dispatch.

Boxes are then mapped to original-image pixels, ``(x - pad) / scale``, and clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from yolodbg.evaluate.postprocess import PostProcess
from yolodbg.geometry import cxcywh_to_xyxy

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.recipes.base import Recipe
    from yolodbg.result import LossResult


@dataclass(frozen=True)
class Detections:
    """One image's detections: ``boxes (D, 4)`` xyxy, ``scores (D,)``, ``labels (D,)`` long, best first."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


def postprocess_for(bundle: Bundle) -> PostProcess:
    """The validator defaults of the bundle's head family (the generic defaults when it declares none)."""
    return bundle.family.postprocess or PostProcess()


NMS_BLOCK = 256  # candidates examined together (a block's IoUs are computed at once)


def _iou_pairs(boxes: np.ndarray, areas: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (the earlier ones) with boxes ``b``, index arrays broadcast against each
    other, as torchvision computes it."""
    x1, y1, x2, y2 = boxes.T
    w = np.clip(np.minimum(x2[a], x2[b]) - np.maximum(x1[a], x1[b]), 0, None)
    h = np.clip(np.minimum(y2[a], y2[b]) - np.maximum(y1[a], y1[b]), 0, None)
    inter = w * h
    # two empty boxes: 0 / 0 = NaN, never above the threshold (as in torchvision)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (areas[a] + areas[b] - inter)


def _iou_rows(boxes: np.ndarray, areas: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(R, C)`` IoU of boxes ``rows`` (the earlier, kept ones) with boxes ``cols``."""
    return _iou_pairs(boxes, areas, rows[:, None], cols[None, :])


def nms(
    boxes: Tensor, scores: Tensor, iou: float, max_keep: int | None = None, labels: Tensor | None = None
) -> Tensor:
    """Greedy NMS: ``(N, 4)`` xyxy, ``(N,)`` scores -> indices kept, best score first, ties in row order.

    Ties are broken as ``torchvision.ops.nms`` does (a stable sort): that is the NMS Ultralytics'
    validator runs, since torchvision is loaded by then (without it Ultralytics falls back to its
    own ``TorchNMS``, whose unstable sort may order tied scores differently).

    A box is suppressed by a kept, higher-scoring box when their IoU exceeds ``iou`` (computed in
    the boxes' dtype, as torchvision does). Boxes are visited best first in blocks: a block is
    first checked against the boxes kept so far, then resolved greedily inside; the walk stops once
    ``max_keep`` boxes are kept (they do not depend on the rest), so the cost follows the number
    kept, not the number of candidates.

    ``labels``: the class of each row when ``boxes`` carry the class-aware offset (``box + class ·
    max_wh``). Where the offset boxes of different classes provably do not intersect (checked
    here), only pairs of one class can suppress each other, and just those IoUs are computed
    (:func:`_nms_within_classes`) — the same keeps, at a fraction of the cost with many classes.

    >>> b = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]])
    >>> nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()   # IoU(0, 1) = 90 / 110
    [0, 2]
    """
    n = int(scores.numel())
    limit = n if max_keep is None else min(n, max_keep)
    if n == 0 or limit <= 0:
        return torch.zeros(0, dtype=torch.long)
    order = scores.argsort(descending=True, stable=True)  # torchvision.ops.nms sorts stably too
    sorted_boxes = boxes[order].detach().cpu().numpy()
    x1, y1, x2, y2 = sorted_boxes.T
    areas = (x2 - x1) * (y2 - y1)
    thr = np.asarray(iou, dtype=sorted_boxes.dtype)
    if labels is not None:
        keep = _nms_within_classes(sorted_boxes, areas, labels[order].cpu().numpy(), thr, limit)
        if keep is not None:
            return order[torch.from_numpy(keep)]
    keep: list[int] = []
    for start in range(0, n, NMS_BLOCK):
        block = np.arange(start, min(start + NMS_BLOCK, n))
        if keep:
            block = block[~(_iou_rows(sorted_boxes, areas, np.asarray(keep), block) > thr).any(0)]
        if not block.size:
            continue
        over = np.triu(_iou_rows(sorted_boxes, areas, block, block) > thr, 1)  # [i, j]: i would suppress j
        alive = np.ones(block.size, dtype=bool)
        for i in np.flatnonzero(over.any(1)).tolist():  # a box that suppresses nothing decides nothing
            if alive[i]:
                alive &= ~over[i]
        keep += block[alive][: limit - len(keep)].tolist()
        if len(keep) == limit:
            break
    return order[torch.tensor(keep, dtype=torch.long)]


def _nms_within_classes(
    boxes: np.ndarray, areas: np.ndarray, labels: np.ndarray, thr: np.ndarray, limit: int
) -> np.ndarray | None:
    """Greedy NMS of rows sorted best first, comparing only rows of one class; None where that is
    not provably the same as comparing all pairs, or would compare too many pairs.

    Rows of two classes can only suppress each other when their boxes intersect; the x-extent of
    each class's (offset) boxes is checked to end at or before the start of every later class's,
    so no two classes intersect (NaN or inverted extents fail the check). The IoU of a pair is
    :func:`_iou_pairs`, as the block walk's, so the decisions are the same bit for bit; then each
    row, best first, that survives suppresses its pairs.
    """
    n = len(labels)
    by_class = np.argsort(labels, kind="stable")  # rows grouped by class, best first inside a class
    grouped = labels[by_class]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    sizes = np.diff(np.r_[starts, n])
    if int((sizes * (sizes - 1) // 2).sum()) > NMS_BLOCK * min(n, limit + NMS_BLOCK):
        return None  # more pairs than the block walk would compare to keep ``limit``
    x1, x2 = boxes[by_class, 0], boxes[by_class, 2]
    first_x = np.minimum.reduceat(x1, starts)
    last_x = np.maximum.accumulate(np.maximum.reduceat(x2, starts))
    if not (np.all(first_x[1:] >= last_x[:-1]) and np.all(first_x <= last_x)):
        return None
    # every pair (a, b), a before b in one class: position q of its class pairs with q+1 .. size-1
    follow = np.repeat(sizes, sizes) - (np.arange(n) - np.repeat(starts, sizes)) - 1
    a = np.repeat(np.arange(n), follow)
    b = a + np.arange(len(a)) - np.repeat(np.cumsum(follow) - follow, follow) + 1
    ra, rb = by_class[a], by_class[b]  # rows in score order: ra < rb
    over = _iou_pairs(boxes, areas, ra, rb) > thr
    ra, rb = ra[over], rb[over]
    suppressed = np.zeros(n, dtype=bool)
    if ra.size:
        by_first = np.argsort(ra, kind="stable")
        ra, rb = ra[by_first], rb[by_first]
        firsts = np.flatnonzero(np.r_[True, ra[1:] != ra[:-1]])
        ends = np.r_[firsts[1:], ra.size]
        for f, e in zip(firsts.tolist(), ends.tolist(), strict=True):  # best first: a suppressor decides
            if not suppressed[ra[f]]:
                suppressed[rb[f:e]] = True
    return np.flatnonzero(~suppressed)[:limit]


def nms_image(boxes_xyxy: Tensor, cls_scores: Tensor, pp: PostProcess) -> Detections:
    """One image: ``(N, 4)`` xyxy boxes, ``(N, nc)`` class scores -> detections after the validator's NMS."""
    cand = cls_scores.amax(1) > pp.conf
    box, cls = boxes_xyxy[cand], cls_scores[cand]
    if pp.multi_label and cls.shape[1] > 1:
        i, j = torch.where(cls > pp.conf)
        box, score, label = box[i], cls[i, j], j
    else:
        score, label = cls.max(1)
        keep = score > pp.conf
        box, score, label = box[keep], score[keep], label[keep]
    if score.numel() > pp.max_nms:
        top = score.argsort(descending=True)[: pp.max_nms]
        box, score, label = box[top], score[top], label[top]
    offset = label[:, None].to(box.dtype) * pp.max_wh
    kept = nms(box + offset, score, pp.iou, pp.max_det, labels=label)
    return Detections(box[kept], score[kept], label[kept])


NMS_CHUNK = 1024  # anchors whose rows are taken best first at a time by the best-rows NMS


def _count_above(x: Tensor, threshold: float) -> int:
    """``int(torch.count_nonzero(x > threshold))``, in numpy (5× faster on one thread): the threshold is
    rounded to the tensor's dtype first, as torch compares a tensor with a Python number."""
    if x.dtype not in (torch.float32, torch.float64):  # bfloat16 has no numpy twin
        return int(torch.count_nonzero(x > threshold))
    a = x.detach().cpu().numpy()
    return int(np.count_nonzero(a > np.asarray(threshold, dtype=a.dtype)))


def nms_best_rows(boxes: Tensor, scores: Tensor, pp: PostProcess) -> Detections:
    """:func:`nms_image` of ``(4, N)`` cxcywh boxes and ``(nc, N)`` scores, visiting only the best rows.

    The validator makes one row per (anchor, class) above ``conf`` — often 10⁴ per image at conf
    0.001 — and NMS keeps at most ``max_det``. Greedy NMS decides each row from the rows before
    it, so running it on the best rows gives the same first ``max_det`` keeps: here, every row
    scoring above ``t``, the ``k``-th best anchor score (those rows lie in the ``k`` best anchors),
    in the validator's order; ``k`` grows until ``max_det`` are kept or every row was seen. With
    more than ``max_nms`` rows, or best-class-only selection, :func:`nms_image` runs as the
    validator does.

    Works on the ``(N, nc)`` view of ``scores`` whatever its memory layout (the replay's sigmoid is
    ``(N, nc)`` in memory, the head's ``(nc, N)``): ``nonzero`` of a block of rows lists the
    candidates by anchor, then class — the validator's order — with no sort.
    """
    rows = scores.t()  # (N, nc): a view
    nc = rows.shape[1]
    best = rows.amax(1)  # per anchor
    above = best > pp.conf
    n_anchors = int(torch.count_nonzero(above))
    if (
        not pp.multi_label
        or nc == 1
        or (n_anchors * nc > pp.max_nms and _count_above(rows, pp.conf) > pp.max_nms)
    ):
        cand = above.nonzero().flatten()
        return nms_image(cxcywh_to_xyxy(boxes[:, cand].t()), rows[cand], pp)
    k = min(n_anchors, NMS_CHUNK)
    while True:
        t = pp.conf if k == n_anchors else max(pp.conf, float(best.topk(k).values[-1]))
        anchors = (above if t == pp.conf else best > t).nonzero().flatten()  # every row above t is in these
        block = rows[anchors]  # (A, nc)
        j, label = (block > t).nonzero().unbind(1)  # row-major: by anchor, then class
        anchor = anchors[j]
        box = cxcywh_to_xyxy(boxes[:, anchor].t())
        score = block[j, label]
        kept = nms(box + label[:, None].to(box.dtype) * pp.max_wh, score, pp.iou, pp.max_det, labels=label)
        if len(kept) >= pp.max_det or k == n_anchors:
            return Detections(box[kept], score[kept], label[kept])
        k = min(n_anchors, 4 * k)


def same_sigmoid(probs: Tensor | None, logits: Tensor) -> bool:
    """Whether ``probs`` (B, N, nc), the replay's sigmoid of the same logits, has the bits ``logits.sigmoid()`` would.

    torch's elementwise kernels round the vectorised body and the scalar tail of each thread's
    chunk differently; with no tail in either layout (every chunk a multiple of 64 elements) each
    element goes through the vectorised body both times, so the values are the same bit for bit.
    """
    if not isinstance(probs, Tensor) or probs.dtype != torch.float32 or logits.dtype != torch.float32:
        return False
    b, c, n = logits.shape
    return tuple(probs.shape) == (b, n, c) and logits.numel() % (64 * torch.get_num_threads()) == 0


def batched_nms(boxes: Tensor, scores: Tensor, classes: Tensor, iou: float) -> Tensor:
    """``torchvision.ops.batched_nms`` (0.29) on CPU: one NMS per class above 4000 numbers, else offsets."""
    if boxes.numel() > 4000:
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for c in torch.unique(classes):
            idx = torch.where(classes == c)[0]
            keep[idx[nms(boxes[idx], scores[idx], iou)]] = True
        kept = torch.where(keep)[0]
        return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    offsets = classes.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou)


def topk_e2e(boxes: Tensor, scores: Tensor, pp: PostProcess) -> list[Detections]:
    """End-to-end selection: top ``max_det`` anchors by best score, then top (anchor, class) pairs; > conf."""
    n, nc = scores.shape[1:]
    k = min(pp.max_det, n)
    out = []
    for bx, sc in zip(boxes, scores, strict=True):
        anchors = sc.amax(-1).topk(k).indices
        flat = sc[anchors].flatten()
        val, idx = flat.topk(k)
        keep = val > pp.conf
        out.append(Detections(bx[anchors[idx // nc]][keep], val[keep], (idx % nc)[keep]))
    return out


def decode(
    bundle: Bundle,
    result: LossResult | None,
    pp: PostProcess | None = None,
    parsed: Any = None,
    recipe: Recipe | None = None,
) -> list[Detections]:
    """Per image detections in network-input pixels, post-processed as the framework evaluates.

    The head family's own decode (:attr:`yolodbg.heads.HeadFamily.decode`) when it has one and can
    run; else ``result`` (the replay) supplies boxes and scores for the generic NMS. ``recipe``, the
    one that computed ``result``, says whether the family's decode may reuse its class scores.
    """
    pp = pp or postprocess_for(bundle)
    own = bundle.family.decode
    dets = own(bundle, pp, parsed, head_probs(result, recipe)) if own is not None else None
    if dets is not None:
        return dets
    boxes, scores = result.pred_boxes, result.pred_scores
    boxes = boxes.materialize() if hasattr(boxes, "materialize") else boxes
    scores = scores.materialize() if hasattr(scores, "materialize") else scores
    return [nms_image(bx.float(), sc.float(), pp) for bx, sc in zip(boxes, scores, strict=True)]


def head_probs(result: LossResult | None, recipe: Recipe | None) -> Tensor | None:
    """The replay's class probabilities when its recipe declares them the head's own sigmoid
    (:attr:`~yolodbg.recipes.base.Recipe.scores_are_head_sigmoid`), else None."""
    if result is None or recipe is None or not recipe.scores_are_head_sigmoid:
        return None
    return result.pred_scores


# the names these helpers had before the head families decoded in their own modules
_nms_best_rows, _same_sigmoid, _topk_e2e = nms_best_rows, same_sigmoid, topk_e2e


def to_original(dets: list[Detections], targets: Targets, clip: bool = True) -> list[Detections]:
    """Map detections into original-image pixels through each image's letterbox, clipped to the image
    (``clip=False``: not clipped, as YOLOX's evaluator leaves them)."""
    out = []
    for i, d in enumerate(dets):
        lb = targets.letterboxes[i] if i < len(targets.letterboxes) else None
        b = d.boxes.float()
        if lb is not None:
            b = lb.to_original_boxes(b)
        if clip:
            h, w = original_size(targets, i)
            b = torch.stack(
                (b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), 1
            )
        out.append(Detections(b, d.scores, d.labels))
    return out


def original_size(targets: Targets, i: int) -> tuple[int, int]:
    """``(h, w)`` of image ``i`` before the letterbox (the input size when nothing says otherwise)."""
    orig = targets.orig_sizes[i] if i < len(targets.orig_sizes) else None
    if orig is not None:
        return orig
    lb = targets.letterboxes[i] if i < len(targets.letterboxes) else None
    h, w = targets.input_size
    if lb is None:
        return (h, w)
    return (round((h - 2 * lb.pad_top) / lb.scale_y), round((w - 2 * lb.pad_left) / lb.scale_x))


def original_boxes(targets: Targets) -> torch.Tensor:
    """``(M, 4)`` GT boxes xyxy in original-image pixels (float64), through each image's letterbox."""
    boxes = targets.boxes_xyxy()
    out = boxes.clone()
    for i in range(targets.batch_size):
        lb = targets.letterboxes[i] if i < len(targets.letterboxes) else None
        if lb is None:
            continue
        rows = targets.batch_idx == i
        out[rows] = lb.to_original_boxes(boxes[rows])
    return out
