"""``yolov1``: the YOLOv1 paper's sum-squared loss (Redmon et al., CVPR 2016).

No framework owns this loss, so the recipe states every choice the paper leaves open:

- ``coord``      = λcoord·[(x−x̂)² + (y−ŷ)² + (√w−√ŵ)² + (√h−√ĥ)²] on each responsible predictor;
- ``conf_obj``   = λobj·(conf − target)², target = IoU of the responsible predictor's box with its GT
  (detached; ``conf_target=one`` uses 1);
- ``conf_noobj`` = λnoobj·conf² on every predictor that is responsible for no GT — including the other
  predictors of a cell that holds an object (the paper's 1noobj_ij);
- ``cls``        = λcls·Σ_c (p_c − onehot_c)² once per cell that holds an object, raw class scores.

√ of a predicted w, h that can be negative (the head has no activation), ``wh_sqrt``: ``signed``
(default) = sign(w)·√(|w| + ε), as the most copied PyTorch re-implementation (Aladdin Persson's
YOLOv1 tutorial and its forks) does; ``clamp`` = √(max(w, 0) + ε); ``plain`` = √(w + ε) (NaN below −ε;
right for heads with a sigmoid); ``direct`` = the head predicts √w, √h itself (darknet ``sqrt=1``):
the output is compared with √w of the GT and its box has w = output². ε = ``wh_eps`` (1e-6) is
added to the prediction only; the target uses √w of the GT. Normalisation ``normalize``: ``batch`` (default) divides each summed term by the
batch size, as most implementations do; ``none`` is the paper's plain sum. Objective = Σ terms.

The recipe as the catalogue knows it; the loss is computed by :mod:`yolodbg.recipes.yolov1_replay`,
imported when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolodbg import forms
from yolodbg.recipes.base import Param, Recipe, register

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.heads.yolov1 import Yolov1Output
    from yolodbg.result import LossResult


@register
class YoloV1(Recipe):
    name = "yolov1"
    reproduces = "YOLOv1 paper sum-squared loss (Redmon et al. 2016; λcoord 5, λnoobj 0.5, √w √h)"
    heads = ("yolov1",)
    head_description = "a YOLOv1 (B, S, S, nb*5 + C) head"
    terms = ("coord", "conf_obj", "conf_noobj", "cls")
    PARAMS = (
        Param("gain.coord", float, 5.0, "λcoord: weight of the x, y, √w, √h errors", minimum=0.0),
        Param(
            "gain.noobj",
            float,
            0.5,
            "λnoobj: weight of conf² on predictors responsible for nothing",
            minimum=0.0,
        ),
        Param("gain.obj", float, 1.0, "weight of the responsible predictors' confidence error", minimum=0.0),
        Param("gain.cls", float, 1.0, "weight of the class error of object cells", minimum=0.0),
        Param(
            "conf_target",
            str,
            "iou",
            "confidence target of a responsible predictor: its IoU with the GT (paper), or 1",
            choices=("iou", "one"),
        ),
        Param(
            "wh_sqrt",
            str,
            "signed",
            "predicted √w, √h: signed = sign(w)·√(|w|+ε) as common PyTorch ports, clamp = √(max(w,0)+ε), "
            "plain = √(w+ε), NaN for w < -ε; direct = the head outputs √w, √h (darknet sqrt=1; box w = out²)",
            choices=("signed", "clamp", "plain", "direct"),
        ),
        Param("wh_eps", float, 1e-6, "ε under the root of the predicted w, h", minimum=0.0),
        Param(
            "normalize",
            str,
            "batch",
            "batch: divide each summed term by the batch size; none: the paper's plain sum",
            choices=("batch", "none"),
        ),
        Param(
            "assigner.conflict",
            str,
            "first",
            "which GT holds a cell that several GT centres fall in",
            choices=forms.YOLOV1_CONFLICT_RULES,
        ),
        Param(
            "assigner.zero_iou",
            str,
            "first",
            "responsible predictor when none overlaps the GT (rmse = darknet)",
            choices=forms.YOLOV1_ZERO_IOU_RULES,
        ),
    )

    reduction = "Σ ÷ batch size (normalize=batch)"

    def replay(self, out: Yolov1Output, bundle: Bundle, targets: Targets) -> LossResult:
        from yolodbg.recipes import yolov1_replay

        return yolov1_replay.run(self, out, bundle, targets)
