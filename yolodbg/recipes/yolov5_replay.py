"""The ``yolov5`` recipe's replay: YOLOv5 ``ComputeLoss`` as of ultralytics/yolov5 v7.0.

Imported when the recipe runs (the class in :mod:`yolodbg.recipes.yolov5` imports no torch); it reads
the recipe it is given and never imports the recipe modules. The gains and the balance come from
the recipe (:meth:`~yolodbg.recipes.yolov5.YoloV5.loss_params`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from yolodbg.assigners import yolov5 as assigner
from yolodbg.bundle import Bundle
from yolodbg.groundtruth import Targets
from yolodbg.heads import yolov5 as head
from yolodbg.recipes import yolov5_loss as loss
from yolodbg.recipes.yolov5_ledger import assemble
from yolodbg.result import LossResult

if TYPE_CHECKING:
    from yolodbg.recipes.yolov5 import YoloV5


def run(recipe: YoloV5, out: head.V5Output, bundle: Bundle, targets: Targets) -> LossResult:
    """``ComputeLoss`` on a parsed output (float32), then the ledger and the report's parts."""
    warnings = list(targets.warnings)
    if out.anchors_from == "default":
        yaml = "yolov5*6.yaml" if out.nl == 4 else "yolov5*.yaml"
        px = [[[int(v) for v in a] for a in lv] for lv in out.anchors_px.tolist()]
        warnings.append(
            f"{bundle.source} has no anchors field: used the default anchors of the {yaml} models (pixels) "
            f"{px}; AutoAnchor may have changed your model's — save Detect.anchors × stride as bundle['anchors']"
        )
    if out.levels[0].dtype != torch.float32:
        warnings.append(
            f"outputs are {out.levels[0].dtype}; replayed in float32 (YOLOv5 trains under autocast, so its "
            "numbers can differ in the last digits)"
        )
    levels = [t.detach().float() for t in out.levels]
    lp, gain_info = recipe.loss_params(out)
    rows = assigner.target_rows(targets.batch_idx, targets.cls, targets.bboxes)
    a = assigner.build_targets(
        rows,
        out.level_shapes,
        out.anchors_grid,
        recipe.params["assigner.anchor_t"],
        recipe.params["assigner.g"],
    )
    terms = [loss.level_terms(pi, m, lp) for pi, m in zip(levels, a.levels, strict=True)]
    lbox, lobj, lcls = loss.items(terms, lp)
    objective = float((lbox + lobj + lcls) * out.batch_size)
    return assemble(
        recipe=recipe,
        out=out,
        rows=rows,
        assignment=a,
        terms=terms,
        lp=lp,
        items={"box": float(lbox), "obj": float(lobj), "cls": float(lcls)},
        objective=objective,
        gain_info=gain_info,
        warnings=warnings,
    )
