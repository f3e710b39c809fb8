"""``yolov5``: YOLOv5 ``ComputeLoss`` as of ultralytics/yolov5 v7.0 (PyPI ``yolov5`` 7.0.14).

Gains start from ``hyp.scratch-low.yaml`` (box 0.05, obj 1.0, cls 0.5) and are rescaled as
``train.py`` does before it builds the loss: ``box × 3/nl``, ``cls × nc/80 × 3/nl``,
``obj × (imgsz/640)² × 3/nl``, with ``imgsz`` the training ``--imgsz`` (default: the longer side
of the bundle's input).

``ComputeLoss(autobalance=True)`` (off by default) updates the per-level objectness balance
*after* it has used it, so one replayed call is the same either way; to replay a later step of
an autobalanced run, pass the balance of that step (``balance=w0/w1/w2``).

The recipe as the catalogue knows it; the loss is computed by :mod:`yolodbg.recipes.yolov5_replay`,
imported when it runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from yolodbg import forms
from yolodbg.errors import RecipeError
from yolodbg.recipes.base import Param, Recipe, register

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.groundtruth import Targets
    from yolodbg.heads.yolov5 import V5Output
    from yolodbg.recipes.yolov5_loss import V5LossParams
    from yolodbg.result import LossResult

YOLOV5_VERSION = "7.0.14"
BALANCE = {3: (4.0, 1.0, 0.4)}
BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)


def rescaled_gains(
    box: float, obj: float, cls: float, nl: int, nc: int, imgsz: int
) -> tuple[float, float, float]:
    """``train.py``'s hyp scaling, with its operation order: ``x *= 3 / nl`` etc.

    >>> rescaled_gains(0.05, 1.0, 0.5, nl=3, nc=20, imgsz=1280)
    (0.05, 4.0, 0.125)
    """
    box *= 3 / nl
    cls *= nc / 80 * 3 / nl
    obj *= (imgsz / 640) ** 2 * 3 / nl
    return box, obj, cls


def default_balance(nl: int) -> tuple[float, ...]:
    """Per-level objectness weights: [4, 1, 0.4] for 3 levels, else the first nl of [4, 1, 0.25, 0.06, 0.02]."""
    return BALANCE.get(nl, BALANCE_OTHER[:nl])


def balance_values(text: str) -> tuple[float, ...]:
    """``"4/1/0.4"`` -> ``(4.0, 1.0, 0.4)``: finite weights ≥ 0, checked when the variant is parsed."""
    try:
        values = tuple(float(v) for v in text.replace("/", " ").replace(";", " ").split())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise RecipeError(
            f"recipe yolov5: balance={text!r}; expected finite weights ≥ 0 separated by '/', e.g. 4/1/0.4"
        )
    return values


def _balance(text: str | None, nl: int, where: str) -> tuple[float, ...]:
    if text is None:
        if nl > len(BALANCE_OTHER):
            raise RecipeError(
                f"{where}: no default objectness balance for {nl} levels; pass balance=w0/w1/..."
            )
        return default_balance(nl)
    values = balance_values(text)
    if len(values) != nl:
        raise RecipeError(
            f"recipe yolov5: balance={text!r} has {len(values)} values; the model has {nl} levels"
        )
    return values


@register
class YoloV5(Recipe):
    name = "yolov5"
    reproduces = f"YOLOv5 ComputeLoss (ultralytics/yolov5 v7.0, PyPI yolov5 {YOLOV5_VERSION})"
    heads = ("yolov5",)
    head_description = "YOLOv5's anchor-based head"
    terms = ("box", "obj", "cls")
    PARAMS = (
        Param(
            "box",
            str,
            "ciou",
            "IoU form of the box term and objectness target (YOLOv5 uses ciou)",
            choices=forms.IOU_KINDS,
        ),
        Param("gain.box", float, 0.05, "box gain before train.py's rescaling (hyp box)", minimum=0.0),
        Param("gain.obj", float, 1.0, "objectness gain before rescaling (hyp obj)", minimum=0.0),
        Param("gain.cls", float, 0.5, "class gain before rescaling (hyp cls)", minimum=0.0),
        Param(
            "gain.rescale", bool, True, "rescale the gains as train.py does (×3/nl, ×nc/80, ×(imgsz/640)²)"
        ),
        Param(
            "gain.imgsz",
            int,
            None,
            "train.py --imgsz for the obj rescaling (default: longer input side)",
            minimum=1,
        ),
        Param(
            "assigner.anchor_t",
            float,
            4.0,
            "largest GT/anchor side ratio that still matches (hyp anchor_t; below 1 nothing could match)",
            minimum=1.0,
        ),
        Param(
            "assigner.g",
            float,
            0.5,
            "neighbour-cell offset: the nearer neighbours within g of an edge join",
            minimum=0.0,
            maximum=1.0,
        ),
        Param(
            "balance",
            str,
            None,
            "objectness weight per level, e.g. 4/1/0.4 (default by nl; with --autobalance, the values at that step)",
        ),
        Param(
            "label_smoothing",
            float,
            0.0,
            "class label smoothing eps: targets 1−eps/2 and eps/2",
            minimum=0.0,
            maximum=1.0,
        ),
        Param(
            "fl_gamma",
            float,
            0.0,
            "focal-loss gamma for obj and cls BCE (0 = plain BCE; alpha 0.25)",
            minimum=0.0,
        ),
        Param("cls_pw", float, 1.0, "pos_weight of the class BCE (hyp cls_pw)", minimum=0.0),
        Param("obj_pw", float, 1.0, "pos_weight of the objectness BCE (hyp obj_pw)", minimum=0.0),
        Param(
            "gr", float, 1.0, "IoU ratio of the objectness target: (1−gr) + gr·IoU", minimum=0.0, maximum=1.0
        ),
        Param("sort_obj_iou", bool, False, "sort positives by IoU before writing objectness (highest wins)"),
    )
    reduction = "box, cls: mean over each level's matches; obj: mean over each level's anchors × balance"

    def __init__(self, params: dict | None = None, *, label: str | None = None):
        super().__init__(params, label=label)
        if self.params["balance"] is not None:
            balance_values(self.params["balance"])  # a bad balance fails now, not after loading a bundle

    def loss_params(self, out: V5Output) -> tuple[V5LossParams, dict[str, float]]:
        """The loss configuration for this output, and the numbers behind its gains (for notes)."""
        from yolodbg.recipes import yolov5_loss as loss

        p = self.params
        imgsz = p["gain.imgsz"] or max(out.input_size)
        base = (p["gain.box"], p["gain.obj"], p["gain.cls"])
        gains = rescaled_gains(*base, nl=out.nl, nc=out.nc, imgsz=imgsz) if p["gain.rescale"] else base
        lp = loss.V5LossParams(
            box=p["box"],
            gains=gains,
            balance=_balance(p["balance"], out.nl, f"recipe {self.name}"),
            label_smoothing=p["label_smoothing"],
            fl_gamma=p["fl_gamma"],
            cls_pw=p["cls_pw"],
            obj_pw=p["obj_pw"],
            gr=p["gr"],
            sort_obj_iou=p["sort_obj_iou"],
        )
        return lp, {"imgsz": float(imgsz), "box": gains[0], "obj": gains[1], "cls": gains[2]}

    def replay(self, out: V5Output, bundle: Bundle, targets: Targets) -> LossResult:
        from yolodbg.recipes import yolov5_replay

        return yolov5_replay.run(self, out, bundle, targets)
