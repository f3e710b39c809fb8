"""``yolo26``: Ultralytics ``E2ELoss`` (ultralytics 8.4.190) — YOLO26 and other end-to-end heads.

Two ``v8DetectionLoss`` branches on the same GT: one-to-many (TAL top-k 10) on
``outputs["one2many"]`` and one-to-one (top-k 7, then the best 1) on ``outputs["one2one"]``.
The trainer back-propagates ``w_o2m · loss_o2m + w_o2o · loss_o2o`` (each × batch size) and
logs the one-to-one items only; ``w_o2m`` decays from 0.8 to 0.1 over the run.

The recipe as the catalogue knows it; its loss is computed by :mod:`yolodbg.recipes.yolo26_replay`,
imported when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolodbg.errors import RecipeError
from yolodbg.recipes.base import Param, register
from yolodbg.recipes.yolov8 import (
    CLASS_WEIGHTS_PARAM,
    FORM_PARAMS,
    GAIN_PARAMS,
    ULTRALYTICS_VERSION,
    UltralyticsRecipe,
)

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.heads.ultralytics import UltralyticsOutput
    from yolodbg.result import LossResult


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
        CLASS_WEIGHTS_PARAM,
    )
    assigner_keys = ("o2m.topk", "o2o.topk", "o2o.topk2")
    reduction = "each branch: Σ ÷ its own S; logs the one-to-one items"
    TOPK_KEYS = ("o2m.topk", "o2o.topk", "o2o.topk2")

    def check_branches(self, out: UltralyticsOutput, bundle: Bundle) -> None:
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

    def replay(self, out: UltralyticsOutput, bundle: Bundle, targets: Targets) -> LossResult:
        from yolodbg.recipes import yolo26_replay

        return yolo26_replay.run(self, out, bundle, targets)
