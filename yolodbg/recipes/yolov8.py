"""``yolov8`` (alias ``yolo11``): Ultralytics ``v8DetectionLoss`` as of ultralytics 8.4.190.

The recipe as the catalogue knows it (parameters, capabilities); its loss is computed by
:mod:`yolodbg.recipes.yolov8_replay`, imported when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from yolodbg import forms
from yolodbg.errors import RecipeError
from yolodbg.forms import TermForms
from yolodbg.recipes.base import Param, Recipe, register

if TYPE_CHECKING:
    from torch import Tensor

    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.heads.ultralytics import UltralyticsOutput
    from yolodbg.result import LossResult

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
        choices=forms.BOX_FORMS,
    ),
    Param("box.beta", float, 1.0, "β of box=smooth_l1, in grid units", minimum=0.0),
    Param("cls", str, "bce", "class term on the TAL soft targets t̂", choices=forms.CLS_FORMS),
    Param("cls.gamma", float, None, "γ of focal / varifocal, β of qfl (default 2)", minimum=0.0),
    Param("cls.alpha", float, None, "α of focal (default 0.25, −1 = off) / varifocal (default 0.75)"),
)
GAIN_PARAMS = (
    Param("gain.box", float, 7.5, "box term gain (hyp box)", minimum=0.0),
    Param("gain.cls", float, 0.5, "class term gain (hyp cls)", minimum=0.0),
    Param("gain.dfl", float, 1.5, "DFL gain (hyp dfl); gain of the L1 term when reg_max is 1", minimum=0.0),
)
# Ultralytics' class weights (cls_pw); see yolodbg.recipes.class_weights
CLASS_WEIGHTS_PARAM = Param(
    "class_weights",
    str,
    None,
    "per-class weights of the class BCE (Ultralytics cls_pw): auto = the bundle's meta.class_weights, "
    "off = none, or w0/w1/... (one per class)",
)


def term_forms(p: dict, recipe: str) -> TermForms:
    """The box/class functions of a recipe's params; a modifier the chosen form lacks is an error."""
    box, cls = p["box"], p["cls"]
    if p["box.beta"] != 1.0 and box != "smooth_l1":
        raise RecipeError(f"recipe {recipe}: box.beta applies to box=smooth_l1 only (box is {box})")
    gamma_ok, alpha_ok = (v is not None for v in forms.CLS_DEFAULTS[cls])
    for key, ok in (("cls.gamma", gamma_ok), ("cls.alpha", alpha_ok)):
        if p[key] is not None and not ok:
            users = [f for f, d in forms.CLS_DEFAULTS.items() if d[key == "cls.alpha"] is not None]
            raise RecipeError(f"recipe {recipe}: {key} applies to cls={'|'.join(users)} only (cls is {cls})")
    alpha = p["cls.alpha"]
    if alpha is not None and not (0 <= alpha <= 1 or (cls == "focal" and alpha == -1)):
        raise RecipeError(
            f"recipe {recipe}: cls.alpha={alpha:g}; expected a value in [0, 1] (focal: or −1 = off)"
        )
    return TermForms(box, p["box.beta"], cls, p["cls.gamma"], alpha)


class UltralyticsRecipe(Recipe):
    """Shared plumbing of the Ultralytics recipes: term forms, the branch and top-k checks of the
    parsed output, its layout, and TAL's geometric reach for the recall ceiling."""

    heads = ("ultralytics",)
    head_description = "Ultralytics' anchor-free head"
    recall_ceiling = "tal_reachable"
    TOPK_KEYS: ClassVar[tuple[str, ...]] = ()  # integer parameters that torch.topk takes over a GT's anchors

    def __init__(self, params: dict | None = None, *, label: str | None = None):
        super().__init__(params, label=label)
        self.forms = term_forms(self.params, self.name)

    def check_parsed(self, out: UltralyticsOutput, bundle: Bundle) -> None:
        self.check_branches(out, bundle)
        self.check_topk(out, bundle)

    def check_topk(self, out: UltralyticsOutput, bundle: Bundle) -> None:
        """A top-k above the anchor count is refused (Ultralytics' own ``torch.topk`` fails there)."""
        anchors = sum(h * w for h, w in out.level_shapes)
        for key in self.TOPK_KEYS:
            value = self.params[key]
            if value is not None and value > anchors:
                raise RecipeError(
                    f"recipe {self.name}: {key}={value} exceeds the {anchors} anchors of {bundle.source}; "
                    f"pick a value in [1, {anchors}]"
                )

    def check_branches(self, out: UltralyticsOutput, bundle: Bundle) -> None:  # pragma: no cover
        raise NotImplementedError

    def input_layout(self, bundle: Bundle) -> tuple[tuple[int, int], int]:
        """Ultralytics scales targets by the size it derives from the first level (``image_size``)."""
        out = self.parse(bundle)
        return out.image_size, out.nc

    def reachable(self, result: LossResult, targets: Targets, num_pos: Tensor) -> Tensor:
        """``(M,)`` bool: the GT has an anchor centre inside its (floored) box — TAL's step A."""
        from yolodbg.recipes.ultralytics_loss import tal_reachable

        return tal_reachable(result, targets)


@register(aliases=("yolo11", "v8"))
class YoloV8(UltralyticsRecipe):
    name = "yolov8"
    reproduces = f"Ultralytics v8DetectionLoss (ultralytics {ULTRALYTICS_VERSION}; YOLOv8, YOLO11 and kin)"
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
        CLASS_WEIGHTS_PARAM,
    )
    assigner_keys = ("branch",)
    reduction = "Σ over anchors ÷ S = Σ t̂ (batch-wide, clamped ≥ 1)"
    scores_are_head_sigmoid = True  # the TAL replay's σ(logits) of the replayed branch
    TOPK_KEYS = ("assigner.topk", "assigner.topk2")

    def check_branches(self, out: UltralyticsOutput, bundle: Bundle) -> None:
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

    def branch(self, out: UltralyticsOutput) -> str:
        return self.params["branch"] or "main"

    def replay(self, out: UltralyticsOutput, bundle: Bundle, targets: Targets) -> LossResult:
        from yolodbg.recipes import yolov8_replay

        return yolov8_replay.run(self, out, bundle, targets)
