"""Unreduced loss terms: every function returns one value per element, never a sum or a mean.

Box terms take predicted and target boxes ``Tensor[..., 4]`` (xyxy, any unit; the recipes use
grid units of the anchor's level) and return either ``Tensor[...]`` (the IoU family: one value
per box pair) or ``Tensor[..., 4]`` (coordinate terms: one value per coordinate).
:func:`box_loss` turns any of them into one value per box pair.

Class / objectness terms take logits and targets in [0, 1] of the same shape ``Tensor[..., C]``
and return ``Tensor[..., C]``; :func:`cls_loss` picks one by name. ``p = sigmoid(logit)`` and
``BCE(p, y) = -[y log p + (1 - y) log(1 - p)]`` (computed from the logit, as PyTorch's
``binary_cross_entropy_with_logits``).

Gains, normalisers and batch factors are the recipe's business, applied in one visible step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg.forms import BOX_FORMS, CLS_DEFAULTS, CLS_FORMS
from yolodbg.geometry import IOU_KINDS, bbox_iou, xyxy_to_cxcywh

SIOU_THETA = 4.0


# ------------------------------------------------------------------------------------------ box terms


def one_minus_iou(pred: Tensor, target: Tensor, kind: str = "ciou", eps: float = 1e-7) -> Tensor:
    """``1 - {IoU, GIoU, DIoU, CIoU}``: ``Tensor[..., 4]`` x ``Tensor[..., 4]`` xyxy -> ``Tensor[...]``.

    The IoU itself is :func:`yolodbg.geometry.bbox_iou` (Ultralytics' arithmetic, eps included).

    >>> a = torch.tensor([0.0, 0.0, 2.0, 2.0]); b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    >>> round(float(one_minus_iou(a, b, "giou")), 4)  # 1 - (1/7 - (9 - 7)/9)
    1.0794
    """
    return 1.0 - bbox_iou(pred, target, kind, eps=eps)


def _enclosing_wh(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Width and height of the smallest box holding both: ``Tensor[...]`` each."""
    cw = pred[..., 2].maximum(target[..., 2]) - pred[..., 0].minimum(target[..., 0])
    ch = pred[..., 3].maximum(target[..., 3]) - pred[..., 1].minimum(target[..., 1])
    return cw, ch


def siou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """SIoU loss (Gevorgyan 2022): ``1 - IoU + (Δ + Ω) / 2`` -> ``Tensor[...]``.

    Angle cost ``Λ = 1 - 2 sin²(arcsin(sin α) - π/4)`` with ``sin α = |Δy_c| / σ`` (the x
    version when α > 45°); distance cost ``Δ = Σ_{x,y} 1 - exp(-(2 - Λ) ρ_t)``, ``ρ_x = (Δx_c /
    C_w)²``; shape cost ``Ω = Σ_{w,h} (1 - exp(-ω_t))^4``, ``ω_w = |w - w_gt| / max(w, w_gt)``.

    >>> a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    >>> float(siou_loss(a, a)) < 1e-6   # identical boxes: every cost is 0
    True
    """
    iou = bbox_iou(pred, target, "iou", eps=eps)
    p, t = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(target)
    dx, dy = t[..., 0] - p[..., 0], t[..., 1] - p[..., 1]
    sigma = (dx.pow(2) + dy.pow(2)).sqrt() + eps
    sin_a, sin_b = dy.abs() / sigma, dx.abs() / sigma
    sin = torch.where(sin_a > math.sqrt(2) / 2, sin_b, sin_a)
    angle = 1 - 2 * (sin.clamp(-1, 1).arcsin() - math.pi / 4).sin().pow(2)
    cw, ch = _enclosing_wh(pred, target)
    gamma = 2 - angle
    distance = (1 - (-gamma * (dx / (cw + eps)).pow(2)).exp()) + (
        1 - (-gamma * (dy / (ch + eps)).pow(2)).exp()
    )
    omega_w = (p[..., 2] - t[..., 2]).abs() / (p[..., 2].maximum(t[..., 2]) + eps)
    omega_h = (p[..., 3] - t[..., 3]).abs() / (p[..., 3].maximum(t[..., 3]) + eps)
    shape = (1 - (-omega_w).exp()).pow(SIOU_THETA) + (1 - (-omega_h).exp()).pow(SIOU_THETA)
    return 1 - iou + (distance + shape) / 2


def eiou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """EIoU loss (Zhang et al. 2022): ``1 - IoU + ρ²/c² + (w - w_gt)²/C_w² + (h - h_gt)²/C_h²`` -> ``Tensor[...]``.

    ρ = centre distance, ``C_w, C_h`` = enclosing box, ``c² = C_w² + C_h²``.

    >>> a = torch.tensor([0.0, 0.0, 2.0, 2.0]); b = torch.tensor([0.0, 0.0, 4.0, 2.0])
    >>> round(float(eiou_loss(a, b)), 4)  # 1 - 1/2 + 1/20 + 4/16 + 0
    0.8
    """
    iou = bbox_iou(pred, target, "iou", eps=eps)
    p, t = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(target)
    cw, ch = _enclosing_wh(pred, target)
    cw2, ch2 = cw.pow(2) + eps, ch.pow(2) + eps
    rho2 = (t[..., 0] - p[..., 0]).pow(2) + (t[..., 1] - p[..., 1]).pow(2)
    return (
        1
        - iou
        + rho2 / (cw2 + ch2)
        + (p[..., 2] - t[..., 2]).pow(2) / cw2
        + (p[..., 3] - t[..., 3]).pow(2) / ch2
    )


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target|`` per coordinate: ``Tensor[..., K]`` -> ``Tensor[..., K]``."""
    return (pred - target).abs()


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Huber-style L1 per coordinate: ``0.5 x²/β`` if ``|x| < β`` else ``|x| - 0.5 β``; β = 0 is L1.

    >>> smooth_l1(torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])).tolist()  # 0.5·0.25, 3 - 0.5
    [0.125, 2.5]
    """
    if beta < 0:
        raise ValueError(f"smooth_l1: beta={beta} must be ≥ 0")
    return F.smooth_l1_loss(pred, target, reduction="none", beta=beta)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """``(pred - target)²`` per coordinate: ``Tensor[..., K]`` -> ``Tensor[..., K]``."""
    return (pred - target).pow(2)


def sqrt_wh_mse(pred: Tensor, target: Tensor) -> Tensor:
    """YOLOv1-style squared error on ``(cx, cy, √w, √h)``: xyxy ``Tensor[..., 4]`` -> ``Tensor[..., 4]``.

    Negative widths (never produced by distance heads) are clamped to 0 before the root.

    >>> sqrt_wh_mse(torch.tensor([0.0, 0.0, 4.0, 1.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])).tolist()
    [2.25, 0.0, 1.0, 0.0]
    """
    p, t = xyxy_to_cxcywh(pred), xyxy_to_cxcywh(target)
    centre = (p[..., :2] - t[..., :2]).pow(2)
    side = (p[..., 2:].clamp(min=0).sqrt() - t[..., 2:].clamp(min=0).sqrt()).pow(2)
    return torch.cat((centre, side), -1)


def box_loss(form: str, pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """One value per box pair for any of :data:`BOX_FORMS`: xyxy ``Tensor[..., 4]`` x2 -> ``Tensor[...]``.

    Coordinate forms (l1, smooth_l1, mse, sqrt_wh_mse) are summed over the four coordinates;
    ``beta`` is smooth L1's β (ignored by the others).
    """
    if form in IOU_KINDS:
        return one_minus_iou(pred, target, form)
    if form == "siou":
        return siou_loss(pred, target)
    if form == "eiou":
        return eiou_loss(pred, target)
    if form == "l1":
        return l1(pred, target).sum(-1)
    if form == "smooth_l1":
        return smooth_l1(pred, target, beta).sum(-1)
    if form == "mse":
        return mse(pred, target).sum(-1)
    if form == "sqrt_wh_mse":
        return sqrt_wh_mse(pred, target).sum(-1)
    raise ValueError(f"unknown box form {form!r}; expected one of {', '.join(BOX_FORMS)}")


# ------------------------------------------------------------------------------------ class / objectness terms


def bce(logits: Tensor, target: Tensor) -> Tensor:
    """``BCE(sigmoid(logit), y)`` per element: ``Tensor[..., C]`` x ``Tensor[..., C]`` -> ``Tensor[..., C]``.

    >>> round(float(bce(torch.tensor([0.0]), torch.tensor([1.0]))), 4)  # -log 0.5
    0.6931
    """
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def ce(logits: Tensor, target: Tensor) -> Tensor:
    """Softmax cross-entropy spread over classes: ``-y_c · log softmax(logit)_c`` -> ``Tensor[..., C]``.

    Summed over C it is the cross-entropy with (soft) target ``y``. There is no background class:
    an all-zero target costs nothing, so background anchors contribute 0.

    >>> round(float(ce(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).sum()), 4)  # -log(1/2)
    0.6931
    """
    return -target * F.log_softmax(logits, dim=-1)


def focal(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Focal loss (Lin et al. 2017): ``α_t (1 - p_t)^γ · BCE`` -> ``Tensor[..., C]``.

    ``p_t = y p + (1 - y)(1 - p)``, ``α_t = y α + (1 - y)(1 - α)``; ``alpha = -1`` switches the
    α weighting off, so ``focal(x, y, 0, -1) == bce(x, y)`` exactly (``(1 - p_t)^0 = 1``).
    """
    if not (0 <= alpha <= 1 or alpha == -1):
        raise ValueError(f"focal: alpha={alpha} must be in [0, 1], or -1 to switch it off")
    ce_ = bce(logits, target)
    p = logits.sigmoid()
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce_ * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss


def varifocal(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = 0.75) -> Tensor:
    """Varifocal loss (Zhang et al. 2021) -> ``Tensor[..., C]``.

    ``q · BCE(p, q)`` where the target ``q > 0`` (IoU-aware score), ``α p^γ · BCE(p, 0)`` where
    ``q = 0``: negatives are down-weighted by their own score, positives weighted by ``q``.

    >>> round(float(varifocal(torch.tensor([0.0]), torch.tensor([0.0]))), 4)  # 0.75 · 0.5² · log 2
    0.13
    """
    p = logits.sigmoid()
    positive = (target > 0).to(logits.dtype)
    weight = alpha * p.pow(gamma) * (1 - positive) + target * positive
    return weight * bce(logits, target)


def qfl(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Quality focal loss (Li et al. 2020, GFL): ``|y - p|^β · BCE(p, y)``, β = ``gamma`` -> ``Tensor[..., C]``.

    >>> round(float(qfl(torch.tensor([0.0]), torch.tensor([1.0]))), 4)  # 0.5² · log 2
    0.1733
    """
    return (target - logits.sigmoid()).abs().pow(gamma) * bce(logits, target)


def cls_loss(
    form: str, logits: Tensor, target: Tensor, gamma: float | None = None, alpha: float | None = None
) -> Tensor:
    """Any of :data:`CLS_FORMS` per element; ``None`` parameters take the paper defaults (:data:`CLS_DEFAULTS`)."""
    if form not in CLS_FORMS:
        raise ValueError(f"unknown class loss {form!r}; expected one of {', '.join(CLS_FORMS)}")
    g0, a0 = CLS_DEFAULTS[form]
    g = g0 if gamma is None else gamma
    a = a0 if alpha is None else alpha
    if form == "bce":
        return bce(logits, target)
    if form == "ce":
        return ce(logits, target)
    if form == "focal":
        return focal(logits, target, g, a)
    if form == "varifocal":
        return varifocal(logits, target, g, a)
    return qfl(logits, target, g)
