"""SimOTA as YOLOX's ``YOLOXHead.get_assignments`` does it (docs/losses.md, YOLOX), one image at a time.

Steps, each kept as a named tensor so a report can say why a GT got the positives it got:

A. geometry: an anchor *centre* ``(cell + 0.5) * stride`` is "in the centre region" of a GT when it
   lies strictly inside the square ``GT centre ± radius * stride``; the **release** variant (YOLOX
   0.1-0.3.0) also tests "strictly inside the GT box". Candidates = anchors in any GT's box or centre
   region (release) / in any GT's centre region (main). A pair is *in the prior* of its GT when the
   anchor is in the box **and** the centre region (release) / in the centre region (main);
B. pairwise IoU of the GTs with the candidates' predicted boxes (cxcywh, no epsilon);
C. cost = Σ_c BCE(√(σ(cls_c)·σ(obj)), onehot_c) + 3·(−log(IoU + 1e-8)) + penalty·[not in prior],
   the class part in float32 on probabilities (log clamped at −100 by PyTorch);
D. dynamic k per GT = max(1, trunc(Σ of its min(10, #candidates) largest IoUs));
E. each GT selects its k cheapest candidates; an anchor selected by several GTs goes to the GT
   of smallest cost (first on ties).

Shapes: G GTs of the image, N anchors, C candidates. Every tensor op mirrors YOLOX's (same
shapes, same order), so ties in ``topk``/``min`` resolve the same way and the costs match to
the bit; release and main also differ in *where* the sigmoid is taken (before or after the
per-GT repeat), which can move a sigmoid by one ulp, so both layouts are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg.result import GtReason


@dataclass(frozen=True)
class SimOtaParams:
    variant: str = "release"  # "release": YOLOX 0.3.0 (box-or-centre candidates); "main": centre only
    center_radius: float = 2.5  # half side of the centre square, in strides
    penalty: float = 1e5  # cost added to pairs outside the GT's prior
    candidate_k: int = 10  # IoUs summed for the dynamic k
    iou_weight: float = 3.0  # weight of −log(IoU + 1e-8) in the cost


RELEASE = SimOtaParams()


@dataclass(frozen=True)
class ImageSimOta:
    """The assignment of one image with G ≥ 1 GTs; C candidates, P positives."""

    candidates: Tensor  # (N,) bool: anchors that enter the cost matrix
    in_box: Tensor  # (G, N) bool: anchor centre strictly inside the GT box (release; all False for main)
    in_centre: Tensor  # (G, N) bool: anchor centre strictly inside the GT's centre square
    in_prior: Tensor  # (G, C) bool: candidate pairs that carry no penalty
    ious: Tensor  # (G, C) IoU of GT and predicted box
    cost: Tensor  # (G, C)
    topk_iou_sum: Tensor  # (G,) sum of the min(candidate_k, C) largest IoUs
    dynamic_k: Tensor  # (G,) long
    selected: Tensor  # (G, C) bool: each GT's k cheapest candidates, before conflicts
    matching: Tensor  # (G, C) bool: after conflicts, at most one GT per candidate
    fg: Tensor  # (N,) bool
    matched_gt: Tensor  # (P,) long: local GT index of each positive, in anchor order
    pred_iou: Tensor  # (P,) IoU of each positive with its GT (YOLOX's class target scale)

    @property
    def candidate_index(self) -> Tensor:
        """(C,) anchor index of each candidate column."""
        return self.candidates.nonzero().flatten()


def geometry(
    gt: Tensor, x_shifts: Tensor, y_shifts: Tensor, strides: Tensor, params: SimOtaParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step A. ``gt (G, 4)`` cxcywh px; shifts and strides ``(N,)`` -> candidates ``(N,)``, in_box,
    in_centre ``(G, N)``, in_prior ``(G, C)``. Arithmetic as each YOLOX version writes it."""
    cx, cy, w, h = (v.unsqueeze(1) for v in gt.unbind(-1))
    if params.variant == "release":
        xc = x_shifts * strides + 0.5 * strides
        yc = y_shifts * strides + 0.5 * strides
        box_deltas = (xc - (cx - 0.5 * w), yc - (cy - 0.5 * h), (cx + 0.5 * w) - xc, (cy + 0.5 * h) - yc)
        in_box = torch.stack(box_deltas, -1).amin(-1) > 0.0
        reach = params.center_radius * strides
    else:
        xc = (x_shifts + 0.5) * strides
        yc = (y_shifts + 0.5) * strides
        in_box = torch.zeros(gt.shape[0], strides.shape[0], dtype=torch.bool)
        reach = strides * params.center_radius
    centre_deltas = (xc - (cx - reach), yc - (cy - reach), (cx + reach) - xc, (cy + reach) - yc)
    in_centre = torch.stack(centre_deltas, -1).amin(-1) > 0.0
    if params.variant == "release":
        candidates = in_box.any(0) | in_centre.any(0)
        in_prior = in_box[:, candidates] & in_centre[:, candidates]
    else:
        candidates = in_centre.any(0)
        in_prior = in_centre[:, candidates]
    return candidates, in_box, in_centre, in_prior


def pairwise_iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """``Tensor[G, 4]`` × ``Tensor[C, 4]`` cxcywh -> ``Tensor[G, C]`` IoU, no epsilon (YOLOX ``bboxes_iou``).

    >>> round(float(pairwise_iou_cxcywh(torch.tensor([[1.0, 1, 2, 2]]), torch.tensor([[2.0, 2, 2, 2]]))), 4)
    0.1429
    """
    tl = torch.max(a[:, None, :2] - a[:, None, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    br = torch.min(a[:, None, :2] + a[:, None, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    area_a = torch.prod(a[:, 2:], 1)
    area_b = torch.prod(b[:, 2:], 1)
    overlap = (tl < br).to(tl.dtype).prod(dim=2)
    inter = torch.prod(br - tl, 2) * overlap
    return inter / (area_a[:, None] + area_b - inter)


def class_cost(cls_logits: Tensor, obj_logits: Tensor, gt_cls: Tensor, nc: int, variant: str) -> Tensor:
    """Step C, class part: ``(C, nc)``, ``(C, 1)`` logits, ``(G,)`` classes -> ``(G, C)`` in float32."""
    g, c = gt_cls.shape[0], cls_logits.shape[0]
    target = F.one_hot(gt_cls.to(torch.int64), nc).float().unsqueeze(1).repeat(1, c, 1)
    if variant == "release":  # sigmoids after the per-GT repeat
        p = cls_logits.float().unsqueeze(0).repeat(g, 1, 1).sigmoid()
        p = (p * obj_logits.float().unsqueeze(0).repeat(g, 1, 1).sigmoid()).sqrt()
    else:  # sigmoids once, then the repeat
        p = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()).sqrt().unsqueeze(0).repeat(g, 1, 1)
    return F.binary_cross_entropy(p, target, reduction="none").sum(-1)


def dynamic_k_matching(cost: Tensor, ious: Tensor, candidate_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Steps D-E: ``(G, C)`` cost and IoU -> topk IoU sums ``(G,)``, k ``(G,)``, selected and final ``(G, C)``."""
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    top_ious, _ = torch.topk(ious, min(candidate_k, ious.size(1)), dim=1)
    iou_sum = top_ious.sum(1)
    ks = torch.clamp(iou_sum.int(), min=1)
    for g, k in enumerate(ks.tolist()):
        _, pos = torch.topk(cost[g], k=k, largest=False)
        matching[g][pos] = 1
    selected = matching.bool()
    per_anchor = matching.sum(0)
    multi = per_anchor > 1
    if bool(multi.any()):
        _, cheapest = torch.min(cost[:, multi], dim=0)
        matching[:, multi] = 0
        matching[cheapest, multi] = 1
    return iou_sum, ks.long(), selected, matching


def assign_image(
    gt: Tensor,
    gt_cls: Tensor,
    boxes: Tensor,
    cls_logits: Tensor,
    obj_logits: Tensor,
    x_shifts: Tensor,
    y_shifts: Tensor,
    strides: Tensor,
    nc: int,
    params: SimOtaParams = RELEASE,
) -> ImageSimOta:
    """SimOTA for one image. ``gt (G, 4)`` cxcywh px and ``gt_cls (G,)`` (float, as in YOLOX's labels);
    ``boxes (N, 4)`` decoded cxcywh px, ``cls_logits (N, nc)``, ``obj_logits (N, 1)``.

    Raises ``ValueError`` when no anchor is a candidate: YOLOX itself fails there (``topk`` with
    k = 1 on an empty cost row).
    """
    with torch.no_grad():
        candidates, in_box, in_centre, in_prior = geometry(gt, x_shifts, y_shifts, strides, params)
        if not bool(candidates.any()):
            raise ValueError("no anchor is a SimOTA candidate for any GT of this image")
        ious = pairwise_iou_cxcywh(gt, boxes[candidates])
        iou_cost = -torch.log(ious + 1e-8)
        cls_cost = class_cost(cls_logits[candidates], obj_logits[candidates], gt_cls, nc, params.variant)
        cost = cls_cost + params.iou_weight * iou_cost + params.penalty * (~in_prior)
        iou_sum, ks, selected, matching = dynamic_k_matching(cost, ious, params.candidate_k)
        kept = matching.sum(0) > 0
        fg = candidates.clone()
        fg[candidates] = kept
        matched_gt = matching[:, kept].argmax(0)
        pred_iou = (matching * ious).sum(0)[kept]
    return ImageSimOta(
        candidates=candidates,
        in_box=in_box,
        in_centre=in_centre,
        in_prior=in_prior,
        ious=ious,
        cost=cost,
        topk_iou_sum=iou_sum,
        dynamic_k=ks,
        selected=selected,
        matching=matching.bool(),
        fg=fg,
        matched_gt=matched_gt,
        pred_iou=pred_iou,
    )


def _slot_details(a: ImageSimOta, slot: int, rows: Tensor) -> dict[str, Any]:
    """One GT's SimOTA numbers: its dynamic k and where it came from, its prior, selection, and
    what the conflict step took from it (``lost_to``: the global row that took most) or gave it."""
    lost = a.selected[slot] & ~a.matching[slot]
    takers = a.matching[:, lost].sum(1)
    kept = a.matching[slot]
    other = int(rows[int(takers.argmax())]) if bool(lost.any()) else None
    return {
        "dynamic_k": int(a.dynamic_k[slot]),
        "topk_iou_sum": round(float(a.topk_iou_sum[slot]), 6),
        "num_candidates": int(a.candidates.sum()),
        "num_prior": int(a.in_prior[slot].sum()),
        "num_selected": int(a.selected[slot].sum()),
        "num_kept": int(kept.sum()),
        "num_lost": int(lost.sum()),
        "lost_to": other,
        "num_gained": int((kept & ~a.selected[slot]).sum()),
    }


def _k_story(d: dict[str, Any], params: SimOtaParams, region: str) -> str:
    """How SimOTA's dynamic k came out for a GT, and how many positives it kept."""
    story = (
        f"k = {d['dynamic_k']} (⌊{math.floor(d['topk_iou_sum'] * 1e4) / 1e4:.4f}⌋, the sum of its "
        f"{min(params.candidate_k, d['num_candidates'])} best IoUs over the image's {d['num_candidates']} "
        f"candidates); {d['num_prior']} candidates in {region}; kept {d['num_kept']}"
    )
    if d["num_gained"]:
        story += (
            f" ({d['num_gained']} not among its k: anchors that several other GTs selected go to the "
            "cheapest of all GTs)"
        )
    return story


def _counted_reason(
    d: dict[str, Any],
    story: str,
    outside: int,
    row_positive: bool,
    num_gt: int,
    params: SimOtaParams,
    region: str,
) -> GtReason:
    """The reason of a GT the loss sees: a zero row used, a lost conflict, no prior, positives outside
    the prior, or (the ordinary case) its dynamic k."""
    if not row_positive:
        return GtReason(
            "zero_row_used",
            f"its label row sums to ≤ 0, yet YOLOX uses it as one of the {num_gt} leading rows "
            f"(and drops a later real GT); {story}",
        )
    other = d["lost_to"]
    if other is not None:
        return GtReason(
            "lost_conflict",
            f"{story}, lost {d['num_lost']} to GT row {other} (lower cost there)",
            other_gt=other,
        )
    if d["num_prior"] == 0:
        return GtReason(
            "no_prior",
            f"no anchor centre inside {region}: its positives carry the {params.penalty:g} penalty; {story}",
        )
    if outside:
        return GtReason("outside_prior", f"{story}, {outside} of them outside {region} (k > anchors inside)")
    return GtReason("dynamic_k", story)


def gt_reasons(
    images: list[ImageSimOta | None],
    row_of_slot: Tensor,
    num_gt: Tensor,
    row_positive: Tensor,
    params: SimOtaParams,
) -> tuple[dict[int, GtReason], dict[int, dict[str, Any]]]:
    """Why each GT got the positives it got, and its SimOTA numbers, both keyed by global GT row.

    ``row_of_slot (B, S)`` global row of each label slot (-1 padding); ``num_gt (B,)`` how many leading
    slots YOLOX uses; ``row_positive (B, S)`` whether the slot's label row sums to more than 0.
    Codes: ``not_counted``, ``zero_row_used``, ``lost_conflict``, ``no_prior``, ``outside_prior``,
    ``dynamic_k`` (the ordinary case: the detail gives k and where it came from).
    """
    reasons: dict[int, GtReason] = {}
    details: dict[int, dict[str, Any]] = {}
    box = "its box ∩ " if params.variant == "release" else ""
    region = f"{box}its {params.center_radius:g}-stride centre square"
    for b, a in enumerate(images):
        for slot in range(row_of_slot.shape[1]):
            row = int(row_of_slot[b, slot])
            if row < 0:
                continue
            if slot >= int(num_gt[b]):
                reasons[row] = GtReason(
                    "not_counted",
                    f"YOLOX counts the label rows that sum to > 0 ({int(num_gt[b])} here) and uses that many leading "
                    "rows; a row before this one sums to ≤ 0, so this GT is never seen by the loss",
                )
                continue
            assert a is not None
            d = details[row] = _slot_details(a, slot, row_of_slot[b])
            story = _k_story(d, params, region)
            outside = int((a.matching[slot] & ~a.in_prior[slot]).sum())
            reasons[row] = _counted_reason(
                d, story, outside, bool(row_positive[b, slot]), int(num_gt[b]), params, region
            )
    return reasons, details
