"""``yolo26``: Ultralytics ``E2ELoss`` (ultralytics 8.4.190) — YOLO26 and other end-to-end heads.

Two ``v8DetectionLoss`` branches on the same GT: one-to-many (TAL top-k 10) on
``outputs["one2many"]`` and one-to-one (top-k 7, then the best 1) on ``outputs["one2one"]``.
The trainer back-propagates ``w_o2m · loss_o2m + w_o2o · loss_o2o`` (each × batch size) and
logs the one-to-one items only; ``w_o2m`` decays from 0.8 to 0.1 over the run.
"""

from __future__ import annotations

import torch

from yolodbg.assigners.tal import TalParams
from yolodbg.assigners.tal_reasons import tal_reasons
from yolodbg.bundle import Bundle
from yolodbg.errors import RecipeError
from yolodbg.groundtruth import Targets
from yolodbg.heads import ultralytics as head
from yolodbg.recipes import class_weights
from yolodbg.recipes.base import Param, register
from yolodbg.recipes.ultralytics_loss import BranchReplay, gt_slots, replay_branch
from yolodbg.recipes.yolov8 import (
    FORM_PARAMS,
    GAIN_PARAMS,
    ULTRALYTICS_VERSION,
    UltralyticsRecipe,
    _as_float32,
    branch_result,
    form_notes,
    gains,
    nan_inputs,
    size_warning,
)
from yolodbg.result import GtReason, LossResult


def branch_weights(epoch: int, epochs: int) -> tuple[float, float]:
    """``(w_o2m, w_o2o)`` after ``epoch`` completed epochs of ``epochs`` (E2ELoss's schedule).

    >>> branch_weights(0, 100)
    (0.8, 0.19999999999999996)
    >>> round(branch_weights(1, 100)[0], 6)
    0.792929
    """
    if epoch == 0:
        o2m = 0.8
        return o2m, 1.0 - o2m
    o2m = max(1 - epoch / max(epochs - 1, 1), 0) * (0.8 - 0.1) + 0.1
    return o2m, max(1.0 - o2m, 0)


@register
class Yolo26(UltralyticsRecipe):
    name = "yolo26"
    reproduces = f"Ultralytics E2ELoss (ultralytics {ULTRALYTICS_VERSION}; YOLO26, end-to-end YOLOv10 heads)"
    heads = ("ultralytics",)
    terms = ("box", "cls", "l1|dfl", "o2m.*")
    PARAMS = (
        *FORM_PARAMS,
        Param("epoch", int, 0, "completed epochs (sets the one-to-many/one-to-one weights)", minimum=0),
        Param("epochs", int, 100, "epochs of the run (hyp epochs)", minimum=1),
        Param(
            "weights.o2m",
            float,
            None,
            "override the one-to-many weight (one-to-one gets 1 − it)",
            minimum=0.0,
            maximum=1.0,
        ),
        Param("o2m.topk", int, 10, "top-k of the one-to-many assigner", minimum=1),
        Param("o2o.topk", int, 7, "top-k of the one-to-one assigner", minimum=1),
        Param("o2o.topk2", int, 1, "positives kept per GT by the one-to-one assigner", minimum=1),
        Param("assigner.alpha", float, 0.5, "exponent of the class score in the metric", minimum=0.0),
        Param("assigner.beta", float, 6.0, "exponent of the CIoU in the metric", minimum=0.0),
        Param("assigner.min_side", float, None, "small-box floor (default stride[1]; 0 = off)", minimum=0.0),
        Param("assigner.eps", float, 1e-9, "epsilon of the target normalisation", above=0.0, maximum=1.0),
        *GAIN_PARAMS,
        class_weights.PARAM,
    )
    ASSIGNER_KEYS = (
        "o2m.topk",
        "o2o.topk",
        "o2o.topk2",
    )  # besides assigner.*: keys that change the positives
    TOPK_KEYS = ("o2m.topk", "o2o.topk", "o2o.topk2")

    def check_branches(self, out: head.UltralyticsOutput, bundle: Bundle) -> None:
        if not out.end2end:
            raise RecipeError(
                f"{bundle.source}: a single-branch output; the yolo26 recipe needs the end-to-end dict "
                "{'one2many': ..., 'one2one': ...} — use the yolov8 recipe for this model"
            )

    def weights(self) -> tuple[float, float]:
        if self.params["weights.o2m"] is not None:
            o2m = self.params["weights.o2m"]
            return o2m, max(1.0 - o2m, 0)
        return branch_weights(self.params["epoch"], self.params["epochs"])

    def _tal(self, topk: int, topk2: int | None) -> TalParams:
        p = self.params
        return TalParams(
            topk, p["assigner.alpha"], p["assigner.beta"], p["assigner.eps"], topk2, p["assigner.min_side"]
        )

    def _notes(
        self, o2m: BranchReplay, o2o: BranchReplay, w_m: float, w_o: float, bs: int, cw_notes: tuple[str, ...]
    ) -> list[str]:
        """How the two branches make the objective, and which positives the report lists."""
        dist = next(k for k in o2o.items if k in ("dfl", "l1"))
        return [
            f"terms are the one-to-one branch's items, as the trainer logs them; o2m.* are the one-to-many items "
            f"(not logged by Ultralytics). objective = ({w_m:.6g} · o2m + {w_o:.6g} · o2o) × batch size {bs} "
            f"(epoch {self.params['epoch']} of {self.params['epochs']})",
            f"positives listed per GT are the one-to-many ones (top-{self.params['o2m.topk']}); details.o2o_anchor "
            f"is the one-to-one match. box/cls/{dist} are divided by S_o2o = {o2o.target_scores_sum:.6g}, "
            f"o2m.* by S_o2m = {o2m.target_scores_sum:.6g}",
            *form_notes(self.params),
            *cw_notes,
        ]

    def _inputs(self, raw: head.UltralyticsOutput, o2m: BranchReplay, o2o: BranchReplay) -> dict:
        """The raw logits of both branches, for the non-finite locator."""
        return {
            **nan_inputs(
                raw.branches["one2many"], o2m, self.forms, "one2many box logit", "one2many class logit"
            ),
            **nan_inputs(
                raw.branches["one2one"], o2o, self.forms, "one2one box logit", "one2one class logit"
            ),
        }

    def run(self, bundle: Bundle, targets: Targets) -> LossResult:
        raw = self.parse(bundle)
        warnings = list(targets.warnings) + size_warning(raw)
        out = _as_float32(raw, warnings)
        g, kind = gains(self.params), self.forms  # kind: the box/class functions of both branches
        cw = class_weights.resolve(self.params["class_weights"], bundle, out.nc, self.name)  # both branches
        warnings += cw.warnings
        o2m = replay_branch(
            out,
            out.branches["one2many"],
            targets,
            self._tal(self.params["o2m.topk"], None),
            g,
            kind,
            cw.values,
        )
        o2o_tal = self._tal(self.params["o2o.topk"], self.params["o2o.topk2"])
        o2o = replay_branch(out, out.branches["one2one"], targets, o2o_tal, g, kind, cw.values)
        w_m, w_o = self.weights()
        bs = out.batch_size
        loss = (torch.stack(list(o2m.items.values())) * bs) * w_m + (
            torch.stack(list(o2o.items.values())) * bs
        ) * w_o
        main = branch_result(o2m, out, targets, self.params["o2m.topk"])
        one = branch_result(o2o, out, targets, self.params["o2o.topk"])
        ledger = {k: v for k, v in one["ledger"].items()}
        ledger.update({f"o2m.{k}": v for k, v in main["ledger"].items()})
        details, reasons = _one_to_one_details(main, one, o2o, out, targets)
        reasons = {**reasons, **main["gt_reasons"]}  # the one-to-many reason explains more when both exist
        main = {k: v for k, v in main.items() if k not in ("ledger", "gt_reasons")}
        return LossResult(
            recipe=self.name,
            params=dict(self.params),
            reproduces=self.reproduces,
            batch_size=bs,
            terms={k: float(v) for k, v in o2o.items.items()},
            extra_terms={f"o2m.{k}": float(v) for k, v in o2m.items.items()},
            objective=float(loss.sum()),
            ledger=ledger,
            gt_reasons=reasons,
            gt_details=details,
            extra_assignments={
                "one2one": {
                    "fg": one["fg"],
                    "gt_of_anchor": one["gt_of_anchor"],
                    "target_score": one["target_score"],
                }
            },
            normalizers={
                "o2m_weight": w_m,
                "o2o_weight": w_o,
                "o2m.target_scores_sum": o2m.target_scores_sum,
                "o2o.target_scores_sum": o2o.target_scores_sum,
            },
            notes=self._notes(o2m, o2o, w_m, w_o, bs, cw.notes),
            warnings=warnings,
            inputs=self._inputs(raw, o2m, o2o),
            **main,
        )


def _one_to_one_details(main: dict, one: dict, o2o, out, targets: Targets) -> tuple[dict, dict]:
    """Per GT: its one-to-one anchor and whether that anchor is also one of its one-to-many positives."""
    details, reasons = {}, {}
    anchors = main["anchors"]
    pos_o2o = one["positives"]
    pos_o2m = main["positives"]
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
