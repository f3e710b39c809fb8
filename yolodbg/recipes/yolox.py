"""``yolox`` and ``yolox-main``: YOLOX ``YOLOXHead.get_losses`` with SimOTA (docs/losses.md, YOLOX).

``yolox`` replays the 0.3.0 release (PyPI ``yolox==0.3.0``, the code of every tagged release);
``yolox-main`` the main branch since commit 14c62a7 (checked at 6ddff48): candidates and prior
from a 1.5-stride centre square only, penalty 1e6. The losses are the same in both.

The recipes as the catalogue knows them; the loss is computed by :mod:`yolodbg.recipes.yolox_replay`,
imported when a recipe runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolodbg.recipes.base import Param, Recipe, register

if TYPE_CHECKING:
    from yolodbg.assigners.simota import SimOtaParams
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.heads.yolox import YoloxOutput
    from yolodbg.result import LossResult

YOLOX_RELEASE = "0.3.0"
YOLOX_MAIN = "6ddff48"


def _params(radius: float, penalty: float) -> tuple[Param, ...]:
    return (
        Param(
            "use_l1",
            bool,
            False,
            "add the L1 term on the raw regression (YOLOX: on in its final no-mosaic epochs)",
        ),
        Param(
            "box",
            str,
            "iou",
            "IoU loss: iou = 1 − IoU², giou = 1 − GIoU (YOLOX IOUloss)",
            choices=("iou", "giou"),
        ),
        Param("gain.iou", float, 5.0, "weight of the IoU term (YOLOX reg_weight)", minimum=0.0),
        Param(
            "assigner.center_radius",
            float,
            radius,
            "half side of the SimOTA centre square, in strides",
            minimum=0.0,
        ),
        Param("assigner.penalty", float, penalty, "cost added to pairs outside a GT's prior", minimum=0.0),
        Param("assigner.candidate_k", int, 10, "largest IoUs summed for a GT's dynamic k", minimum=1),
        Param(
            "assigner.iou_weight", float, 3.0, "weight of −log(IoU + 1e-8) in the SimOTA cost", minimum=0.0
        ),
    )


@register
class YoloX(Recipe):
    name = "yolox"
    reproduces = f"YOLOX YOLOXHead.get_losses with SimOTA (yolox {YOLOX_RELEASE}, all tagged releases)"
    heads = ("yolox",)
    head_description = "YOLOX's decoupled head"
    terms = ("iou", "obj", "cls", "l1")
    PARAMS = _params(2.5, 1e5)
    reduction = "Σ ÷ num_fg (positives in the batch)"
    VARIANT = "release"

    def simota_params(self) -> SimOtaParams:
        from yolodbg.assigners.simota import SimOtaParams

        p = self.params
        return SimOtaParams(
            self.VARIANT, p["assigner.center_radius"], p["assigner.penalty"], p["assigner.candidate_k"],
            p["assigner.iou_weight"],
        )  # fmt: skip

    def replay(self, out: YoloxOutput, bundle: Bundle, targets: Targets) -> LossResult:
        from yolodbg.recipes import yolox_replay

        return yolox_replay.run(self, out, bundle, targets)


@register
class YoloXMain(YoloX):
    name = "yolox-main"
    reproduces = (
        f"YOLOX YOLOXHead.get_losses with SimOTA (main branch, commit {YOLOX_MAIN}; 1.5-stride centre prior)"
    )
    PARAMS = _params(1.5, 1e6)
    VARIANT = "main"
