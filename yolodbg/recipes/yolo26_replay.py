"""The ``yolo26`` recipe's replay: ``E2ELoss``, two TAL branches of ``v8DetectionLoss`` on the same GT.

Imported when the recipe runs (the class in :mod:`yolodbg.recipes.yolo26` imports no torch); it
reads the recipe it is given and never imports the recipe modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from yolodbg.assigners.tal import TalParams
from yolodbg.assigners.tal_reasons import tal_reasons
from yolodbg.bundle import Bundle
from yolodbg.groundtruth import Targets
from yolodbg.heads import ultralytics as head
from yolodbg.recipes import class_weights
from yolodbg.recipes.ultralytics_loss import BranchReplay, gt_slots, replay_branch
from yolodbg.recipes.yolov8_replay import (
    _as_float32,
    branch_result,
    form_notes,
    gains,
    nan_inputs,
    size_warning,
)
from yolodbg.result import BranchResult, GtReason, LossResult

if TYPE_CHECKING:
    from yolodbg.recipes.yolo26 import Yolo26


def _tal(p: dict, topk: int, topk2: int | None) -> TalParams:
    return TalParams(
        topk, p["assigner.alpha"], p["assigner.beta"], p["assigner.eps"], topk2, p["assigner.min_side"]
    )


def _notes(
    recipe: Yolo26,
    o2m: BranchReplay,
    o2o: BranchReplay,
    w_m: float,
    w_o: float,
    bs: int,
    cw_notes: tuple[str, ...],
) -> list[str]:
    """How the two branches make the objective, and which positives the report lists."""
    p = recipe.params
    dist = next(k for k in o2o.items if k in ("dfl", "l1"))
    return [
        f"terms are the one-to-one branch's items, as the trainer logs them; o2m.* are the one-to-many items "
        f"(not logged by Ultralytics). objective = ({w_m:.6g} · o2m + {w_o:.6g} · o2o) × batch size {bs} "
        f"(epoch {p['epoch']} of {p['epochs']})",
        f"positives listed per GT are the one-to-many ones (top-{p['o2m.topk']}); details.o2o_anchor "
        f"is the one-to-one match. box/cls/{dist} are divided by S_o2o = {o2o.target_scores_sum:.6g}, "
        f"o2m.* by S_o2m = {o2m.target_scores_sum:.6g}",
        *form_notes(p),
        *cw_notes,
    ]


def _inputs(recipe: Yolo26, raw: head.UltralyticsOutput, o2m: BranchReplay, o2o: BranchReplay) -> dict:
    """The raw logits of both branches, for the non-finite locator."""
    return {
        **nan_inputs(
            raw.branches["one2many"], o2m, recipe.forms, "one2many box logit", "one2many class logit"
        ),
        **nan_inputs(raw.branches["one2one"], o2o, recipe.forms, "one2one box logit", "one2one class logit"),
    }


def run(recipe: Yolo26, raw: head.UltralyticsOutput, bundle: Bundle, targets: Targets) -> LossResult:
    """Both branches on a parsed end-to-end output; the one-to-one items are the logged terms."""
    p = recipe.params
    warnings = list(targets.warnings) + size_warning(raw)
    out = _as_float32(raw, warnings)
    g, kind = gains(p), recipe.forms  # kind: the box/class functions of both branches
    cw = class_weights.resolve(p["class_weights"], bundle, out.nc, recipe.name)  # both branches
    warnings += cw.warnings
    o2m = replay_branch(
        out, out.branches["one2many"], targets, _tal(p, p["o2m.topk"], None), g, kind, cw.values
    )
    o2o_tal = _tal(p, p["o2o.topk"], p["o2o.topk2"])
    o2o = replay_branch(out, out.branches["one2one"], targets, o2o_tal, g, kind, cw.values)
    w_m, w_o = recipe.weights()
    bs = out.batch_size
    loss = (torch.stack(list(o2m.items.values())) * bs) * w_m + (
        torch.stack(list(o2o.items.values())) * bs
    ) * w_o
    main = branch_result(o2m, out, targets, p["o2m.topk"])
    one = branch_result(o2o, out, targets, p["o2o.topk"])
    ledger = {k: v for k, v in one.ledger.items()}
    ledger.update({f"o2m.{k}": v for k, v in main.ledger.items()})
    details, reasons = _one_to_one_details(main, one, o2o, out, targets)
    reasons = {**reasons, **main.gt_reasons}  # the one-to-many reason explains more when both exist
    return LossResult.from_branch(
        main,
        ledger=ledger,
        gt_reasons=reasons,
        recipe=recipe.name,
        params=dict(p),
        reproduces=recipe.reproduces,
        batch_size=bs,
        terms={k: float(v) for k, v in o2o.items.items()},
        extra_terms={f"o2m.{k}": float(v) for k, v in o2m.items.items()},
        objective=float(loss.sum()),
        gt_details=details,
        extra_assignments={"one2one": one.assignment()},
        normalizers={
            "o2m_weight": w_m,
            "o2o_weight": w_o,
            "o2m.target_scores_sum": o2m.target_scores_sum,
            "o2o.target_scores_sum": o2o.target_scores_sum,
        },
        notes=_notes(recipe, o2m, o2o, w_m, w_o, bs, cw.notes),
        warnings=warnings,
        inputs=_inputs(recipe, raw, o2m, o2o),
    )


def _one_to_one_details(
    main: BranchResult, one: BranchResult, o2o: BranchReplay, out: head.UltralyticsOutput, targets: Targets
) -> tuple[dict, dict]:
    """Per GT: its one-to-one anchor and whether that anchor is also one of its one-to-many positives."""
    details, reasons = {}, {}
    anchors = main.anchors
    pos_o2o = one.positives
    pos_o2m = main.positives
    imgsz = torch.tensor(out.level_shapes[0], dtype=torch.float32) * out.strides[0]
    _, gt_bboxes, mask_gt, _ = gt_slots(targets, imgsz)
    points, stride_t = head.make_anchors(out, torch.float32)
    o2o_reasons = tal_reasons(
        o2o.assignment, o2o.gt_row_of_slot, gt_bboxes, points * stride_t, mask_gt, topk=1
    )
    for r in range(len(targets)):
        mine = (pos_o2o.gt == r).nonzero().flatten()
        if len(mine):
            k = int(mine[0])
            a = int(pos_o2o.anchor[k])
            in_o2m = bool(((pos_o2m.gt == r) & (pos_o2m.anchor == a)).any())
            d = anchors.describe(a)
            d.update(iou=round(float(pos_o2o.iou[k]), 6), weight=round(float(pos_o2o.weight[k]), 9))
            details[r] = {"o2o_anchor": d, "o2o_in_o2m": in_o2m}
        else:
            details[r] = {"o2o_anchor": None, "o2o_in_o2m": False}
            why = o2o_reasons.get(r)
            detail = "no one-to-one positive" + (f" ({why.code}: {why.detail})" if why else "")
            reasons[r] = GtReason("no_one2one_match", detail, why.other_gt if why else None)
    return details, reasons
