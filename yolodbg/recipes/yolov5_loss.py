"""YOLOv5 ``ComputeLoss`` (v7.0) terms, unreduced first.

The logged items are accumulated exactly as the framework does (float32, level by level,
``(1 − IoU).mean()``, ``BCE.mean()``, balance and gains applied in the same order), so they
match its log to the bit; the same per-element values go into the ledger in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg.assigners.yolov5 import LevelMatches


@dataclass(frozen=True)
class V5LossParams:
    box: str = "ciou"
    gains: tuple[float, float, float] = (0.05, 1.0, 0.5)  # box, obj, cls after train.py's rescaling
    balance: tuple[float, ...] = (4.0, 1.0, 0.4)
    label_smoothing: float = 0.0
    fl_gamma: float = 0.0
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    gr: float = 1.0
    sort_obj_iou: bool = False


@dataclass(frozen=True)
class LevelTerms:
    """One level's unreduced values."""

    box_loss: Tensor  # (n,) 1 − IoU of each positive
    iou: Tensor  # (n,) IoU (the configured kind) of each positive, the objectness target before clamping
    plain_iou: Tensor  # (n,) plain IoU of each positive (diagnostics)
    obj_target: Tensor  # (B, na, H, W) objectness target after every write
    write_order: Tensor  # (n,) long: positions (into the level) in the order they wrote obj_target
    write_value: Tensor  # (n,) the value each write put, in write order
    obj_bce: Tensor  # (B, na, H, W) objectness BCE per cell
    cls_bce: Tensor  # (n, nc) class BCE per positive (empty when nc == 1)


def bbox_iou_xywh(box1: Tensor, box2: Tensor, kind: str = "ciou", eps: float = 1e-7) -> Tensor:
    """YOLOv5's ``bbox_iou(xywh=True)``: ``Tensor[n, 4]`` cxcywh × ``Tensor[n, 4]`` -> ``Tensor[n]``.

    Widths and heights are used as given (no ``eps`` on them); ``eps`` goes into the union, the
    squared enclosing diagonal and the enclosing area; CIoU's ``alpha = v / (v − iou + (1 + eps))``
    is a constant (no gradient).

    >>> round(float(bbox_iou_xywh(torch.tensor([[1.0, 1, 2, 2]]), torch.tensor([[2.0, 2, 2, 2]]), "iou")[0]), 4)
    0.1429
    """
    return iou_and_plain(box1, box2, kind, eps)[0]


def iou_and_plain(box1: Tensor, box2: Tensor, kind: str, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    """:func:`bbox_iou_xywh` of the given kind and the plain IoU it is built on, both ``Tensor[n]``."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.chunk(4, -1), box2.chunk(4, -1)
    w1_, h1_, w2_, h2_ = w1 / 2, h1 / 2, w2 / 2, h2 / 2
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1_, x1 + w1_, y1 - h1_, y1 + h1_
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2_, x2 + w2_, y2 - h2_, y2 + h2_
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    plain = iou.detach().squeeze(-1)
    if kind == "iou":
        return iou.squeeze(-1), plain
    cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
    ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
    if kind == "giou":
        c_area = cw * ch + eps
        return (iou - (c_area - union) / c_area).squeeze(-1), plain
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2) ** 2 + (b2_y1 + b2_y2 - b1_y1 - b1_y2) ** 2) / 4
    if kind == "diou":
        return (iou - rho2 / c2).squeeze(-1), plain
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():  # CIoU's aspect weight is a constant
        alpha = v / (v - iou + (1 + eps))
    return (iou - (rho2 / c2 + v * alpha)).squeeze(-1), plain


def bce(logits: Tensor, target: Tensor, pos_weight: float, fl_gamma: float) -> Tensor:
    """Per-element BCE-with-logits (``pos_weight``), wrapped in YOLOv5's focal loss when ``fl_gamma > 0``.

    The values equal ``BCEWithLogitsLoss(pos_weight=tensor([pos_weight]), reduction="none")`` to the bit;
    a strided input is made contiguous first and a unit ``pos_weight`` (a multiplication by exactly 1)
    is skipped, which only makes it faster.
    """
    logits = logits.contiguous()
    pw = None if pos_weight == 1.0 else torch.tensor([pos_weight], dtype=logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    if fl_gamma > 0:  # TF-style focal factor, alpha 0.25
        prob = torch.sigmoid(logits)
        p_t = target * prob + (1 - target) * (1 - prob)
        alpha_factor = target * 0.25 + (1 - target) * (1 - 0.25)
        loss = loss * (alpha_factor * (1.0 - p_t) ** fl_gamma)
    return loss


def decode_positives(pi: Tensor, m: LevelMatches, nc: int) -> tuple[Tensor, Tensor]:
    """``pbox (n, 4)`` cxcywh in the cell frame (grid units) and ``class logits (n, nc)`` of the positives."""
    pxy, pwh, _, pcls = pi[m.image, m.slot, m.gj, m.gi].split((2, 2, 1, nc), 1)
    pxy = pxy.sigmoid() * 2 - 0.5
    pwh = (pwh.sigmoid() * 2) ** 2 * m.anchor_wh
    return torch.cat((pxy, pwh), 1), pcls


def level_terms(pi: Tensor, m: LevelMatches, p: V5LossParams) -> LevelTerms:
    """Unreduced box, objectness and class values of one level ``pi (B, na, H, W, 5 + nc)``."""
    nc = pi.shape[-1] - 5
    n = len(m)
    tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype)
    order = torch.arange(n)
    empty = torch.zeros(0, dtype=pi.dtype)
    iou, plain, box_loss, written = empty, empty, empty, empty
    cls_bce = torch.zeros(0, nc, dtype=pi.dtype)
    if n:
        pbox, pcls = decode_positives(pi, m, nc)
        iou, plain = iou_and_plain(pbox, m.tbox, p.box)
        box_loss = 1.0 - iou
        score = iou.detach().clamp(0).type(tobj.dtype)
        b, a, gj, gi = m.image, m.slot, m.gj, m.gi
        if p.sort_obj_iou:  # ascending IoU: the highest one is written last
            order = score.argsort()
            score, b, a, gj, gi = score[order], b[order], a[order], gj[order], gi[order]
        if p.gr < 1:
            score = (1.0 - p.gr) + p.gr * score
        tobj[b, a, gj, gi] = score
        written = score
        if nc > 1:
            cp, cn = 1.0 - 0.5 * p.label_smoothing, 0.5 * p.label_smoothing
            t = torch.full_like(pcls, cn)
            t[torch.arange(n), m.cls] = cp
            cls_bce = bce(pcls, t, p.cls_pw, p.fl_gamma)
    obj_bce = bce(pi[..., 4], tobj, p.obj_pw, p.fl_gamma)
    return LevelTerms(box_loss, iou, plain, tobj, order, written, obj_bce, cls_bce)


def items(levels: list[LevelTerms], p: V5LossParams) -> tuple[Tensor, Tensor, Tensor]:
    """The logged ``(lbox, lobj, lcls)``: float32 ``(1,)`` tensors, accumulated in the framework's order."""
    lbox, lobj, lcls = torch.zeros(1), torch.zeros(1), torch.zeros(1)
    for i, t in enumerate(levels):
        if t.box_loss.numel():
            lbox += t.box_loss.mean()
            if t.cls_bce.numel():
                lcls += t.cls_bce.mean()
        lobj += t.obj_bce.mean() * p.balance[i]
    lbox *= p.gains[0]
    lobj *= p.gains[1]
    lcls *= p.gains[2]
    return lbox, lobj, lcls


def winners(m: LevelMatches, t: LevelTerms) -> Tensor:
    """``(n,)`` for each positive, the position (into the level) of the positive whose value its cell holds.

    Duplicate index writes keep the last one on the CPU. Should a cell hold another value (a
    multi-threaded write), the last write of the value it holds is taken instead, so the
    attribution always matches ``obj_target``.
    """
    n = len(m)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    _, na, h, w = t.obj_target.shape
    b, a, gj, gi = (v[t.write_order] for v in (m.image, m.slot, m.gj, m.gi))
    key = ((b * na + a) * h + gj) * w + gi
    step = torch.arange(n)
    last = torch.empty(t.obj_target.numel(), dtype=torch.long)  # only the written cells are read back
    last.scatter_reduce_(0, key, step, "amax", include_self=False)
    pick = last[key]  # the last write step of each step's cell
    held = t.obj_target.view(-1)[key]
    value = t.write_value[pick]
    if not bool(((value == held) | (value.isnan() & held.isnan())).all()):
        match = (t.write_value == held) | (t.write_value.isnan() & held.isnan())
        last_match = torch.full_like(last, -1).scatter_reduce_(0, key, torch.where(match, step, -1), "amax")
        pick = torch.where(last_match[key] >= 0, last_match[key], pick)
    out = torch.empty(n, dtype=torch.long)
    out[t.write_order] = t.write_order[pick]
    return out
