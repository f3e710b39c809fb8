"""The names a recipe parameter can choose from: loss functions and assignment rules, without torch.

The recipe catalogue (``yolodbg recipes``, checking ``-r`` variants) reads these names before any
number is computed, so they live in this leaf module, which imports nothing; the modules that
compute (:mod:`yolodbg.geometry`, :mod:`yolodbg.terms`, :mod:`yolodbg.assigners.yolov1`, the
recipes' replays) import them from here, so one tuple names each choice.
"""

from __future__ import annotations

from dataclasses import dataclass

IOU_KINDS = ("iou", "giou", "diou", "ciou")
BOX_FORMS = (*IOU_KINDS, "siou", "eiou", "l1", "smooth_l1", "mse", "sqrt_wh_mse")
CLS_FORMS = ("bce", "ce", "focal", "varifocal", "qfl")
# the papers' defaults of the modulating parameters: form -> (gamma, alpha); None = the form has none
CLS_DEFAULTS: dict[str, tuple[float | None, float | None]] = {
    "bce": (None, None),
    "ce": (None, None),
    "focal": (2.0, 0.25),  # Lin et al. 2017
    "varifocal": (2.0, 0.75),  # Zhang et al. 2021
    "qfl": (2.0, None),  # Li et al. 2020 (their β)
}

# YOLOv1: which GT holds a cell several GT centres fall in; which predictor answers when none overlaps
YOLOV1_CONFLICT_RULES = ("first", "last", "largest")
YOLOV1_ZERO_IOU_RULES = ("first", "rmse")


@dataclass(frozen=True)
class TermForms:
    """Which function computes the box and class terms (see :mod:`yolodbg.terms`)."""

    box: str = "ciou"  # one of BOX_FORMS
    box_beta: float = 1.0  # smooth L1's beta (grid units)
    cls: str = "bce"  # one of CLS_FORMS
    cls_gamma: float | None = None  # None = the form's paper default
    cls_alpha: float | None = None
