"""``yolov8`` (alias ``yolo11``): Ultralytics ``v8DetectionLoss`` as of ultralytics 8.4.190."""

from __future__ import annotations

import math

import torch

from yolodbg import terms
from yolodbg.assigners.tal import TalParams
from yolodbg.assigners.tal_reasons import tal_reasons
from yolodbg.bundle import Bundle
from yolodbg.errors import RecipeError
from yolodbg.groundtruth import Targets
from yolodbg.heads import ultralytics as head
from yolodbg.recipes import class_weights
from yolodbg.recipes.base import Param, Recipe, register
from yolodbg.recipes.ultralytics_loss import BranchReplay, Gains, TermForms, gt_slots, replay_branch
from yolodbg.result import LossResult, Positives, TermLedger

ULTRALYTICS_VERSION = "8.4.190"

TAL_PARAMS = (
    Param("assigner.topk", int, 10, "anchors each GT selects by alignment metric (step C)", minimum=1),
    Param(
        "assigner.alpha", float, 0.5, "exponent of the class score in the metric score^α·CIoU^β", minimum=0.0
    ),
    Param("assigner.beta", float, 6.0, "exponent of the CIoU in the metric", minimum=0.0),
    Param(
        "assigner.min_side",
        float,
        None,
        "small-box floor: GT sides below it are enlarged to it when looking for anchors inside "
        "(default: stride[1]; 0 = off, as Ultralytics ≤ 8.3)",
        minimum=0.0,
    ),
    Param(
        "assigner.topk2", int, None, "keep only this many best positives per GT after conflicts", minimum=1
    ),
    Param("assigner.eps", float, 1e-9, "epsilon of the target normalisation", above=0.0, maximum=1.0),
)
FORM_PARAMS = (
    Param(
        "box",
        str,
        "ciou",
        "box term: 1 − IoU-kind, or a coordinate loss on xyxy in grid units summed over the 4 coordinates "
        "(sqrt_wh_mse: cx, cy, √w, √h)",
        choices=terms.BOX_FORMS,
    ),
    Param("box.beta", float, 1.0, "β of box=smooth_l1, in grid units", minimum=0.0),
    Param("cls", str, "bce", "class term on the TAL soft targets t̂", choices=terms.CLS_FORMS),
    Param("cls.gamma", float, None, "γ of focal / varifocal, β of qfl (default 2)", minimum=0.0),
    Param("cls.alpha", float, None, "α of focal (default 0.25, −1 = off) / varifocal (default 0.75)"),
)
GAIN_PARAMS = (
    Param("gain.box", float, 7.5, "box term gain (hyp box)", minimum=0.0),
    Param("gain.cls", float, 0.5, "class term gain (hyp cls)", minimum=0.0),
    Param("gain.dfl", float, 1.5, "DFL gain (hyp dfl); gain of the L1 term when reg_max is 1", minimum=0.0),
)


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


def term_forms(p: dict, recipe: str) -> TermForms:
    """The box/class functions of a recipe's params; a modifier the chosen form lacks is an error."""
    box, cls = p["box"], p["cls"]
    if p["box.beta"] != 1.0 and box != "smooth_l1":
        raise RecipeError(f"recipe {recipe}: box.beta applies to box=smooth_l1 only (box is {box})")
    gamma_ok, alpha_ok = (v is not None for v in terms.CLS_DEFAULTS[cls])
    for key, ok in (("cls.gamma", gamma_ok), ("cls.alpha", alpha_ok)):
        if p[key] is not None and not ok:
            users = [f for f, d in terms.CLS_DEFAULTS.items() if d[key == "cls.alpha"] is not None]
            raise RecipeError(f"recipe {recipe}: {key} applies to cls={'|'.join(users)} only (cls is {cls})")
    alpha = p["cls.alpha"]
    if alpha is not None and not (0 <= alpha <= 1 or (cls == "focal" and alpha == -1)):
        raise RecipeError(
            f"recipe {recipe}: cls.alpha={alpha:g}; expected a value in [0, 1] (focal: or −1 = off)"
        )
    return TermForms(box, p["box.beta"], cls, p["cls.gamma"], alpha)


def form_notes(p: dict) -> list[str]:
    """Notes that say which parts of the loss a variant replaced."""
    notes = []
    if p["box"] != "ciou":
        notes.append(f"box term: {p['box']} instead of Ultralytics' CIoU (same positives, weights t̂ and S)")
    if p["cls"] != "bce":
        extra = "; no background class, so background anchors cost 0" if p["cls"] == "ce" else ""
        notes.append(f"class term: {p['cls']} instead of BCE on the same soft targets t̂{extra}")
    return notes


class UltralyticsRecipe(Recipe):
    """Shared plumbing of the Ultralytics recipes: term forms, parsing the head output once, its layout."""

    def __init__(self, params: dict | None = None, *, label: str | None = None):
        super().__init__(params, label=label)
        self.forms = term_forms(self.params, self.name)

    def parse(self, bundle: Bundle) -> head.UltralyticsOutput:
        return self.parsed(bundle, self._parse)

    def _parse(self, bundle: Bundle) -> head.UltralyticsOutput:
        if bundle.head != "ultralytics":
            raise RecipeError(
                f"recipe {self.name} replays Ultralytics' anchor-free head, but {bundle.source} holds a "
                f"{bundle.head} head; pick a recipe for that head (yolodbg recipes)"
            )
        out = head.parse(
            bundle.outputs,
            strides=bundle.strides,
            input_size=bundle.input_size,
            nc=bundle.nc,
            where=bundle.source,
        )
        self.check_branches(out, bundle)
        self.check_topk(out, bundle)
        return out

    TOPK_KEYS: tuple[str, ...] = ()  # integer parameters that torch.topk takes over a GT's anchors

    def check_topk(self, out: head.UltralyticsOutput, bundle: Bundle) -> None:
        """A top-k above the anchor count is refused (Ultralytics' own ``torch.topk`` fails there)."""
        anchors = sum(h * w for h, w in out.level_shapes)
        for key in self.TOPK_KEYS:
            value = self.params[key]
            if value is not None and value > anchors:
                raise RecipeError(
                    f"recipe {self.name}: {key}={value} exceeds the {anchors} anchors of {bundle.source}; "
                    f"pick a value in [1, {anchors}]"
                )

    def check_branches(self, out: head.UltralyticsOutput, bundle: Bundle) -> None:  # pragma: no cover
        raise NotImplementedError

    def input_layout(self, bundle: Bundle) -> tuple[tuple[int, int], int]:
        out = self.parse(bundle)
        return out.image_size, out.nc


@register(aliases=("yolo11", "v8"))
class YoloV8(UltralyticsRecipe):
    name = "yolov8"
    reproduces = f"Ultralytics v8DetectionLoss (ultralytics {ULTRALYTICS_VERSION}; YOLOv8, YOLO11 and kin)"
    heads = ("ultralytics",)
    terms = ("box", "cls", "dfl")
    PARAMS = (
        *FORM_PARAMS,
        Param(
            "branch",
            str,
            None,
            "branch of an end-to-end output to replay v8DetectionLoss on (default: the only branch)",
            choices=("one2many", "one2one"),
        ),
        *TAL_PARAMS,
        *GAIN_PARAMS,
        class_weights.PARAM,
    )
    ASSIGNER_KEYS = ("branch",)  # besides assigner.*: keys that change the positives
    TOPK_KEYS = ("assigner.topk", "assigner.topk2")

    def check_branches(self, out: head.UltralyticsOutput, bundle: Bundle) -> None:
        branch = self.params["branch"]
        if out.end2end and branch is None:
            raise RecipeError(
                f"{bundle.source}: an end-to-end output (one2many + one2one, YOLO26/YOLOv10); the yolov8 recipe "
                "replays single-branch models — use the yolo26 recipe, or yolov8:branch=one2many for one branch"
            )
        if not out.end2end and branch is not None:
            raise RecipeError(
                f"recipe yolov8: branch={branch}, but {bundle.source} holds a single-branch output; drop branch="
            )

    def branch(self, out: head.UltralyticsOutput) -> str:
        return self.params["branch"] or "main"

    def run(self, bundle: Bundle, targets: Targets) -> LossResult:
        raw = self.parse(bundle)
        warnings = list(targets.warnings) + size_warning(raw)
        out = _as_float32(raw, warnings)
        name = self.branch(out)
        cw = class_weights.resolve(self.params["class_weights"], bundle, out.nc, self.name)
        warnings += cw.warnings
        rep = replay_branch(
            out,
            out.branches[name],
            targets,
            tal_params(self.params),
            gains(self.params),
            self.forms,
            cw.values,
        )
        items = {k: float(v) for k, v in rep.items.items()}
        objective = float((torch.stack(list(rep.items.values())) * out.batch_size).sum())
        result = branch_result(rep, out, targets, self.params["assigner.topk"])
        notes = [
            f"normaliser S = Σ target scores over the batch = {rep.target_scores_sum:.6g} (clamped ≥ 1): every "
            "GT's share is its part of the batch loss, divided by the same S",
            f"objective = (box + cls + {next(iter(k for k in items if k in ('dfl', 'l1')))}) × batch size "
            f"{out.batch_size}, what the trainer back-propagates",
        ]
        if out.form == "list":
            notes.append("outputs in the pre-8.4 list form; replayed with the 8.4.190 loss")
        if name != "main":
            notes.append(f"v8DetectionLoss replayed on the {name} branch of an end-to-end output")
        notes += form_notes(self.params) + list(cw.notes)
        return LossResult(
            recipe=self.name,
            params=dict(self.params),
            reproduces=self.reproduces,
            batch_size=out.batch_size,
            terms=items,
            objective=objective,
            normalizers={"target_scores_sum": rep.target_scores_sum},
            notes=notes,
            warnings=warnings,
            inputs=nan_inputs(raw.branches[name], rep, self.forms),
            gt_reachable=candidate_rows(rep, len(targets)),
            **result,
        )


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
    from dataclasses import replace

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


def branch_result(rep: BranchReplay, out: head.UltralyticsOutput, targets: Targets, topk: int) -> dict:
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
    return {
        "ledger": ledger,
        "positives": positives,
        "anchors": head.anchors(out),
        "pred_boxes": rep.pred_boxes_px,
        "pred_scores": rep.scores,
        "fg": a.fg,
        "gt_of_anchor": gt_of_anchor,
        "target_score": a.target_weight,
        "gt_reasons": reasons,
    }
