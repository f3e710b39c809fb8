"""The ``yolox`` and ``yolox-main`` recipes' replay: YOLOX ``YOLOXHead.get_losses`` with SimOTA.

Imported when a recipe runs (the classes in :mod:`yolodbg.recipes.yolox` import no torch); it reads
the recipe it is given and never imports the recipe modules.

Ground truth: yolodbg's targets hold normalised ``cx, cy, w, h`` of the input; YOLOX's labels are
``(B, max_labels, 5)`` rows ``[class, cx, cy, w, h]`` in input pixels, zero-padded. They are built
here as ``float32(bboxes) * float32([W, H, W, H])``, rows of an image in their order, so a replay
equals YOLOX fed those pixel values (a label that was normalised from pixels may differ from the
original by an ulp). As YOLOX does, an image's GT count is its number of rows that sum to > 0 and
the loss uses that many *leading* rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from yolodbg.assigners import simota
from yolodbg.bundle import Bundle
from yolodbg.errors import RecipeError
from yolodbg.groundtruth import Targets
from yolodbg.heads import yolox as head
from yolodbg.result import BranchResult, LossResult, Positives, TermLedger

if TYPE_CHECKING:
    from yolodbg.recipes.yolox import YoloX

TERMS = ("iou", "obj", "cls", "l1")  # the logged items, in YOLOX's order


@dataclass(frozen=True)
class YoloxReplay:
    """The replay of one batch: items as logged (float32) and per-element values (float64, normalised)."""

    items: dict[str, Tensor]  # "iou" (× gain), "obj", "cls", "l1": float32 scalars
    total: Tensor  # float32: what get_losses returns first
    images: list[simota.ImageSimOta | None]
    fg: Tensor  # (B, N) bool
    gt_slot: Tensor  # (B, N) long: label slot of the assigned GT, -1 on background
    pred_iou: Tensor  # (B, N) float32 class-target IoU, 0 on background
    cost: Tensor  # (B, N) float32 SimOTA cost of each positive with its GT, nan elsewhere
    in_prior: Tensor  # (B, N) bool: positive lies in its GT's prior
    fg_terms: dict[str, Tensor]  # "iou", "cls", "l1": (P,) float64 contributions of the positives
    obj: Tensor  # (B, N) float64 objectness contributions
    num_fg: float  # the normaliser max(Σ positives, 1)
    num_gts: int


def yolox_labels(targets: Targets) -> tuple[Tensor, Tensor]:
    """Targets -> YOLOX labels ``(B, S, 5)`` float32 ``[cls, cx, cy, w, h]`` px and the global row of each slot."""
    bs, m = targets.batch_size, len(targets)
    slots = int(torch.bincount(targets.batch_idx, minlength=bs).max()) if m else 0
    h, w = targets.input_size
    labels = torch.zeros(bs, slots, 5)
    row_of_slot = torch.full((bs, slots), -1, dtype=torch.long)
    if m:
        local = targets.local_index()
        labels[targets.batch_idx, local, 0] = targets.cls.to(torch.float32)
        labels[targets.batch_idx, local, 1:] = targets.bboxes * torch.tensor(
            [w, h, w, h], dtype=torch.float32
        )
        row_of_slot[targets.batch_idx, local] = torch.arange(m)
    return labels, row_of_slot


def iou_sq_or_giou_loss(pred: Tensor, target: Tensor, kind: str = "iou") -> Tensor:
    """``Tensor[P, 4]`` × ``Tensor[P, 4]`` cxcywh -> ``Tensor[P]`` YOLOX ``IOUloss`` (``1 − IoU²`` or ``1 − GIoU``).

    >>> float(iou_sq_or_giou_loss(torch.tensor([[1.0, 1, 2, 2]]), torch.tensor([[1.0, 2, 2, 2]])))  # IoU 2/6: 1 − 1/9
    0.8888888955116272
    """
    p_lt, p_rb = pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2
    t_lt, t_rb = target[:, :2] - target[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2
    tl, br = torch.max(p_lt, t_lt), torch.min(p_rb, t_rb)
    area_p, area_g = torch.prod(pred[:, 2:], 1), torch.prod(target[:, 2:], 1)
    inter = torch.prod(br - tl, 1) * (tl < br).to(tl.dtype).prod(dim=1)
    union = area_p + area_g - inter
    iou = inter / (union + 1e-16)
    if kind == "iou":
        return 1 - iou**2
    area_c = torch.prod(torch.max(p_rb, t_rb) - torch.min(p_lt, t_lt), 1)
    giou = iou - (area_c - union) / area_c.clamp(1e-16)
    return 1 - giou.clamp(min=-1.0, max=1.0)


def l1_target(gt: Tensor, stride: Tensor, x_shift: Tensor, y_shift: Tensor) -> Tensor:
    """``(P, 4)`` matched GT cxcywh px -> ``(P, 4)`` raw-regression targets (YOLOX ``get_l1_target``)."""
    return torch.stack(
        (
            gt[:, 0] / stride - x_shift,
            gt[:, 1] / stride - y_shift,
            torch.log(gt[:, 2] / stride + 1e-8),
            torch.log(gt[:, 3] / stride + 1e-8),
        ),
        1,
    )


@dataclass
class _BatchTargets:
    """``get_losses``' per-image target lists (concatenated after the loop) and the per-anchor extras
    the report shows (assigned slot, IoU, cost and prior of each positive; ``(B, N)`` each)."""

    cls: list[Tensor]
    reg: list[Tensor]
    l1: list[Tensor]
    obj: list[Tensor]
    fg: list[Tensor]
    gt_slot: Tensor
    pred_iou: Tensor
    cost: Tensor
    in_prior: Tensor

    @classmethod
    def empty(cls, bs: int, n: int) -> _BatchTargets:
        return cls(
            [], [], [], [], [],
            gt_slot=torch.full((bs, n), -1, dtype=torch.long),
            pred_iou=torch.zeros(bs, n),
            cost=torch.full((bs, n), float("nan")),
            in_prior=torch.zeros(bs, n, dtype=torch.bool),
        )  # fmt: skip

    def add_image_without_gt(self, outputs: Tensor, n: int, nc: int) -> None:
        """An image of no GT: empty class/box targets, every anchor an objectness negative."""
        self.cls.append(outputs.new_zeros((0, nc)))
        self.reg.append(outputs.new_zeros((0, 4)))
        self.l1.append(outputs.new_zeros((0, 4)))
        self.obj.append(outputs.new_zeros((n, 1)))
        self.fg.append(outputs.new_zeros(n).bool())

    def add_image(
        self, b: int, a: simota.ImageSimOta, gt: Tensor, gt_cls: Tensor, out: head.YoloxOutput, use_l1: bool
    ) -> None:
        """An assigned image: targets of its positives (class one-hot · IoU, box, L1) and their extras."""
        matched = a.matched_gt
        self.cls.append(F.one_hot(gt_cls[matched].to(torch.int64), out.nc) * a.pred_iou.unsqueeze(-1))
        self.reg.append(gt[matched])
        self.obj.append(a.fg.unsqueeze(-1))
        self.fg.append(a.fg)
        if use_l1:
            self.l1.append(
                l1_target(gt[matched], out.expanded_strides[a.fg], out.x_shifts[a.fg], out.y_shifts[a.fg])
            )
        cols = a.matching.any(0)
        self.gt_slot[b, a.fg] = matched
        self.pred_iou[b, a.fg] = a.pred_iou
        self.cost[b, a.fg] = a.cost[:, cols].gather(0, matched[None])[0]
        self.in_prior[b, a.fg] = a.in_prior[:, cols].gather(0, matched[None])[0]


def _assign_image(
    out: head.YoloxOutput, b: int, g: int, gt: Tensor, gt_cls: Tensor, sp: simota.SimOtaParams
) -> simota.ImageSimOta:
    """SimOTA on image ``b`` (``get_assignments``); a batch YOLOX itself fails on is a RecipeError."""
    outputs = out.outputs
    bbox_preds, obj_preds, cls_preds = outputs[:, :, :4], outputs[:, :, 4].unsqueeze(-1), outputs[:, :, 5:]
    try:
        return simota.assign_image(
            gt, gt_cls, bbox_preds[b], cls_preds[b], obj_preds[b], out.x_shifts, out.y_shifts,
            out.expanded_strides, out.nc, sp,
        )  # fmt: skip
    except ValueError:
        raise RecipeError(
            f"image {b}: none of its {g} GTs has an anchor centre inside its box or centre region (boxes "
            f"outside the {out.input_size[0]}x{out.input_size[1]} input?); YOLOX itself fails on such a batch "
            "(topk on an empty candidate set) — fix or drop these labels"
        ) from None


def replay(out: head.YoloxOutput, labels: Tensor, p: dict, sp: simota.SimOtaParams) -> YoloxReplay:
    """Replay ``get_losses`` on a parsed output and YOLOX labels, in YOLOX's order of operations."""
    outputs, nc = out.outputs, out.nc
    bbox_preds, obj_preds, cls_preds = outputs[:, :, :4], outputs[:, :, 4].unsqueeze(-1), outputs[:, :, 5:]
    bs, n = outputs.shape[:2]
    nlabel = (labels.sum(dim=2) > 0).sum(dim=1)
    images: list[simota.ImageSimOta | None] = []
    t = _BatchTargets.empty(bs, n)
    num_fg, num_gts = 0.0, 0
    for b in range(bs):
        g = int(nlabel[b])
        num_gts += g
        if g == 0:
            images.append(None)
            t.add_image_without_gt(outputs, n, nc)
            continue
        gt, gt_cls = labels[b, :g, 1:5], labels[b, :g, 0]
        a = _assign_image(out, b, g, gt, gt_cls, sp)
        images.append(a)
        num_fg += int(a.fg.sum())
        t.add_image(b, a, gt, gt_cls, out, p["use_l1"])
    fg = torch.cat(t.fg, 0)
    cls_targets, reg_targets = torch.cat(t.cls, 0), torch.cat(t.reg, 0)
    obj_targets = torch.cat([o.to(outputs.dtype) for o in t.obj], 0)
    norm = max(num_fg, 1)
    iou_elem = iou_sq_or_giou_loss(bbox_preds.view(-1, 4)[fg], reg_targets, p["box"])
    obj_elem = F.binary_cross_entropy_with_logits(obj_preds.view(-1, 1), obj_targets, reduction="none")
    cls_elem = F.binary_cross_entropy_with_logits(cls_preds.view(-1, nc)[fg], cls_targets, reduction="none")
    loss_iou, loss_obj, loss_cls = iou_elem.sum() / norm, obj_elem.sum() / norm, cls_elem.sum() / norm
    if p["use_l1"]:
        l1_elem = F.l1_loss(out.raw_reg.reshape(-1, 4)[fg], torch.cat(t.l1, 0), reduction="none")
        loss_l1 = l1_elem.sum() / norm
    else:
        l1_elem, loss_l1 = torch.zeros(iou_elem.shape[0], 4), torch.zeros(())
    gain = p["gain.iou"]
    total = gain * loss_iou + loss_obj + loss_cls + (loss_l1 if p["use_l1"] else 0.0)
    n64 = float(norm)
    return YoloxReplay(
        items={"iou": gain * loss_iou, "obj": loss_obj, "cls": loss_cls, "l1": loss_l1},
        total=total,
        images=images,
        fg=fg.view(bs, n),
        gt_slot=t.gt_slot,
        pred_iou=t.pred_iou,
        cost=t.cost,
        in_prior=t.in_prior,
        fg_terms={
            "iou": iou_elem.double() * gain / n64,
            "cls": cls_elem.double().sum(-1) / n64,
            "l1": l1_elem.double().sum(-1) / n64,
        },
        obj=obj_elem.double().view(bs, n) / n64,
        num_fg=float(norm),
        num_gts=num_gts,
    )


def run(recipe: YoloX, out: head.YoloxOutput, bundle: Bundle, targets: Targets) -> LossResult:
    """``get_losses`` on a parsed output, with the recipe's SimOTA variant and loss options."""
    warnings = list(targets.warnings)
    dtypes = {str(t.dtype) for t in bundle.outputs if t.dtype != torch.float32}
    if dtypes:
        warnings.append(
            f"outputs are {', '.join(sorted(dtypes))}; replayed in float32 (a trainer under autocast can differ "
            "in the last digits)"
        )
    labels, row_of_slot = yolox_labels(targets)
    sp = recipe.simota_params()
    rep = replay(out, labels, recipe.params, sp)
    positive = labels.sum(dim=2) > 0
    reasons, per_gt = simota.gt_reasons(rep.images, row_of_slot, positive.sum(1), positive, sp)
    return LossResult.from_branch(
        _branch_result(rep, out, row_of_slot),
        gt_reasons=reasons,
        recipe=recipe.name,
        params=dict(recipe.params),
        reproduces=recipe.reproduces,
        batch_size=out.batch_size,
        terms={k: float(v) for k, v in rep.items.items()},
        objective=float(rep.total),
        normalizers={
            "num_fg": rep.num_fg,
            "num_gts": float(rep.num_gts),
            "num_fg_per_gt": rep.num_fg / max(rep.num_gts, 1),
        },
        notes=_notes(rep, sp, recipe.params),
        warnings=warnings,
        inputs={
            "box regression": out.raw_reg,
            "objectness logit": out.outputs[:, :, 4:5],
            "class logit": out.outputs[:, :, 5:],
        },
        gt_details=per_gt,
    )


def _notes(rep: YoloxReplay, sp: simota.SimOtaParams, p: dict) -> list[str]:
    fg_per_gt = rep.num_fg / max(rep.num_gts, 1)
    prior = "in its box and its" if sp.variant == "release" else "in its"
    return [
        f"normaliser num_fg = Σ positives over the batch = {rep.num_fg:g} (at least 1): every term and every "
        f"GT's share is divided by it; YOLOX logs num_fg / max(num_gts, 1) = {fg_per_gt:.4g}",
        f"objective = {p['gain.iou']:g}·IoU + obj + cls + l1 as get_losses returns it (no batch-size "
        f"factor); the iou term is logged already × {p['gain.iou']:g}",
        f"SimOTA ({sp.variant}): a GT keeps its k = max(1, ⌊Σ {sp.candidate_k} best IoUs⌋) cheapest candidates; "
        f"anchors {prior} {sp.center_radius:g}-stride centre square cost no penalty ({sp.penalty:g} otherwise); "
        "align = cost of the pair (lower is better), weight = its IoU (the class target)",
        "l1 is on (use_l1=true)" if p["use_l1"] else "l1 is off (YOLOX adds it in the last epochs)",
    ]


def _branch_result(rep: YoloxReplay, out: head.YoloxOutput, row_of_slot: Tensor) -> BranchResult:
    """The recipe-independent parts of a :class:`LossResult` (the reasons are added by :func:`run`)."""
    bs, n = rep.fg.shape
    gt_of_anchor = torch.full((bs, n), -1, dtype=torch.long)
    if row_of_slot.shape[1]:
        rows = row_of_slot.gather(1, rep.gt_slot.clamp(min=0))
        gt_of_anchor = torch.where(rep.fg, rows, gt_of_anchor)
    img, anc = rep.fg.nonzero(as_tuple=True)
    gt = gt_of_anchor[img, anc]
    ledger = {k: TermLedger.sparse(v, img, anc, gt) for k, v in rep.fg_terms.items()}
    ledger["obj"] = TermLedger.dense(rep.obj, gt_of_anchor)
    positives = Positives(
        image=img,
        anchor=anc,
        gt=gt,
        iou=rep.pred_iou[img, anc].double(),
        align=rep.cost[img, anc].double(),
        weight=rep.pred_iou[img, anc].double(),
        flags={"outside_prior": ~rep.in_prior[img, anc]},
    )
    return BranchResult(
        ledger={k: ledger[k] for k in TERMS},
        positives=positives,
        anchors=head.anchors(out),
        pred_boxes=head.boxes_xyxy(out),
        pred_scores=head.scores(out),
        fg=rep.fg,
        gt_of_anchor=gt_of_anchor,
        target_score=rep.pred_iou,
    )
