"""The ``yolov8`` recipe's replay: ``v8DetectionLoss`` on one TAL branch, and the parts of a
:class:`~yolodbg.result.LossResult` every Ultralytics recipe builds from a branch.

Imported when a recipe runs (the recipe classes in :mod:`yolodbg.recipes.yolov8` import no torch);
it reads the recipe it is given and never imports the recipe modules.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from yolodbg.assigners.tal import TalParams
from yolodbg.assigners.tal_reasons import tal_reasons
from yolodbg.bundle import Bundle
from yolodbg.forms import TermForms
from yolodbg.groundtruth import Targets
from yolodbg.heads import ultralytics as head
from yolodbg.recipes import class_weights
from yolodbg.recipes.ultralytics_loss import BranchReplay, Gains, gt_slots, replay_branch
from yolodbg.result import BranchResult, LossResult, Positives, TermLedger

if TYPE_CHECKING:
    from yolodbg.recipes.yolov8 import YoloV8


def tal_params(p: dict) -> TalParams:
    return TalParams(
        topk=p["assigner.topk"],
        alpha=p["assigner.alpha"],
        beta=p["assigner.beta"],
        eps=p["assigner.eps"],
        topk2=p["assigner.topk2"],
        min_side=p["assigner.min_side"],
    )


def gains(p: dict) -> Gains:
    return Gains(p["gain.box"], p["gain.cls"], p["gain.dfl"])


def form_notes(p: dict) -> list[str]:
    """Notes that say which parts of the loss a variant replaced."""
    notes = []
    if p["box"] != "ciou":
        notes.append(f"box term: {p['box']} instead of Ultralytics' CIoU (same positives, weights t̂ and S)")
    if p["cls"] != "bce":
        extra = "; no background class, so background anchors cost 0" if p["cls"] == "ce" else ""
        notes.append(f"class term: {p['cls']} instead of BCE on the same soft targets t̂{extra}")
    return notes


def run(recipe: YoloV8, raw: head.UltralyticsOutput, bundle: Bundle, targets: Targets) -> LossResult:
    """``v8DetectionLoss`` on the recipe's branch of a parsed output (float32, as the trainer computes)."""
    p = recipe.params
    warnings = list(targets.warnings) + size_warning(raw)
    out = _as_float32(raw, warnings)
    name = recipe.branch(out)
    cw = class_weights.resolve(p["class_weights"], bundle, out.nc, recipe.name)
    warnings += cw.warnings
    rep = replay_branch(out, out.branches[name], targets, tal_params(p), gains(p), recipe.forms, cw.values)
    items = {k: float(v) for k, v in rep.items.items()}
    objective = float((torch.stack(list(rep.items.values())) * out.batch_size).sum())
    return LossResult.from_branch(
        branch_result(rep, out, targets, p["assigner.topk"]),
        recipe=recipe.name,
        params=dict(p),
        reproduces=recipe.reproduces,
        batch_size=out.batch_size,
        terms=items,
        objective=objective,
        normalizers={"target_scores_sum": rep.target_scores_sum},
        notes=_notes(rep, out, name, items, p) + list(cw.notes),
        warnings=warnings,
        inputs=nan_inputs(raw.branches[name], rep, recipe.forms),
        gt_reachable=candidate_rows(rep, len(targets)),
    )


def _notes(rep: BranchReplay, out: head.UltralyticsOutput, branch: str, items: dict, p: dict) -> list[str]:
    """The normaliser, what the objective is, and what this replay did differently from the default."""
    notes = [
        f"normaliser S = Σ target scores over the batch = {rep.target_scores_sum:.6g} (clamped ≥ 1): every "
        "GT's share is its part of the batch loss, divided by the same S",
        f"objective = (box + cls + {next(iter(k for k in items if k in ('dfl', 'l1')))}) × batch size "
        f"{out.batch_size}, what the trainer back-propagates",
    ]
    if out.form == "list":
        notes.append("outputs in the pre-8.4 list form; replayed with the 8.4.190 loss")
    if branch != "main":
        notes.append(f"v8DetectionLoss replayed on the {branch} branch of an end-to-end output")
    return notes + form_notes(p)


def nan_inputs(
    branch: head.Branch,
    rep: BranchReplay,
    forms: TermForms,
    box: str = "box-distribution logit",
    cls: str = "class logit",
) -> dict:
    """The raw values the NaN locator searches, by name: the box logits, and the class logits unless
    the logged BCE proves them finite (a non-finite logit makes its BCE element, and so the sum, NaN
    or +inf; a finite logit gives a finite element), which spares a pass over (B, N, nc)."""
    inputs = {box: branch.pred_dist}
    if not (forms.cls == "bce" and math.isfinite(float(rep.items["cls"]))):
        inputs[cls] = branch.pred_scores
    return inputs


def size_warning(out: head.UltralyticsOutput) -> list[str]:
    """Ultralytics scales targets by the size it derives from the first level, not by the real input size."""
    if out.image_size == out.input_size:
        return []
    (h, w), (dh, dw) = out.image_size, out.input_size
    return [
        f"input {w}×{h} is not a multiple of stride {out.strides[0]:g}: Ultralytics scales the normalised targets by "
        f"the {dw}×{dh} it derives from the first level, and so does this replay"
    ]


def _as_float32(out: head.UltralyticsOutput, warnings: list[str]) -> head.UltralyticsOutput:
    first = next(iter(out.branches.values()))
    if first.pred_scores.dtype == torch.float32:
        return out
    warnings.append(
        f"outputs are {first.pred_scores.dtype}; replayed in float32 (the trainer computes under autocast, so its "
        "numbers can differ in the last digits)"
    )
    branches = {
        k: head.Branch(b.pred_dist.float(), b.pred_scores.float(), b.reg_max) for k, b in out.branches.items()
    }
    return replace(out, branches=branches)


def candidate_rows(rep: BranchReplay, m: int) -> torch.Tensor:
    """``(M,)`` bool per GT row: an anchor centre lies in its (floored) box — TAL's step A, from the replay."""
    out = torch.zeros(m, dtype=torch.bool)
    slots = rep.gt_row_of_slot
    if m and slots.shape[1]:
        valid = slots >= 0
        out[slots[valid]] = rep.assignment.candidates.any(-1)[valid]
    return out


def branch_result(
    rep: BranchReplay, out: head.UltralyticsOutput, targets: Targets, topk: int
) -> BranchResult:
    """The recipe-independent parts of a :class:`LossResult` for one TAL branch."""
    a = rep.assignment
    bs, n = a.fg.shape
    gt_of_anchor = torch.full((bs, n), -1, dtype=torch.long)
    if rep.gt_row_of_slot.shape[1]:
        rows = rep.gt_row_of_slot.gather(1, a.gt_slot)
        gt_of_anchor = torch.where(a.fg, rows, gt_of_anchor)
    ledger = {k: TermLedger.dense(v, gt_of_anchor) for k, v in rep.per_anchor.items()}
    img, anc = a.fg.nonzero(as_tuple=True)
    slot = a.gt_slot[img, anc]
    align = a.align_metric[img, slot, anc] if a.align_metric.shape[1] else torch.zeros(0)
    flags = {}
    if len(img):
        td = rep.target_dist[img, anc]
        flags["dfl_clipped"] = (td > rep.dfl_reach).any(-1)
        flags["outside_box"] = (td <= 0).any(-1)
    positives = Positives(
        image=img,
        anchor=anc,
        gt=gt_of_anchor[img, anc],
        iou=rep.box_iou_px[img, anc].double(),
        align=align.double(),
        weight=a.target_weight[img, anc].double(),
        flags=flags,
    )
    imgsz = torch.tensor(out.level_shapes[0], dtype=torch.float32) * out.strides[0]
    _, gt_bboxes, mask_gt, _ = gt_slots(targets, imgsz)
    points, stride_t = head.make_anchors(out, torch.float32)
    reasons = tal_reasons(a, rep.gt_row_of_slot, gt_bboxes, points * stride_t, mask_gt, topk)
    return BranchResult(
        ledger=ledger,
        positives=positives,
        anchors=head.anchors(out),
        pred_boxes=rep.pred_boxes_px,
        pred_scores=rep.scores,
        fg=a.fg,
        gt_of_anchor=gt_of_anchor,
        target_score=a.target_weight,
        gt_reasons=reasons,
    )
