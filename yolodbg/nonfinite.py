"""NaN/Inf locator: name the first image, GT, anchor and term that is not finite, and why.

Instead of printing ``nan`` totals, yolodbg reports where the first non-finite value sits:
a non-finite head output (and whether it looks like an fp16 overflow), or a loss element
that became non-finite (with its GT and anchor), naming the operand that blew up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from yolodbg.groundtruth import Targets
from yolodbg.result import LossResult

FP16_MAX = 65504.0


@dataclass(frozen=True)
class NonFinite:
    message: str  # one sentence for the user
    term: str | None
    image_index: int | None
    gt_row: int | None
    anchor: dict | None
    operand: str

    def to_json(self) -> dict:
        return {
            "message": self.message,
            "term": self.term,
            "image_index": self.image_index,
            "gt_row": self.gt_row,
            "anchor": self.anchor,
            "operand": self.operand,
        }


def locate(result: LossResult, targets: Targets) -> NonFinite | None:
    """The first non-finite input or loss element, or None when everything is finite."""
    terms_finite = all(math.isfinite(v) for v in result.terms.values())
    for name, tensor in result.inputs.items():
        if _all_finite(tensor):
            continue
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            b, a, c = (int(v) for v in bad.nonzero()[0])
            value = float(tensor[b, a, c])
            desc = result.anchors.describe(a)
            overflow = tensor.dtype == torch.float16 or (math.isinf(value) and _near_fp16_max(tensor))
            operand = "fp16 overflow" if overflow and math.isinf(value) else f"non-finite {name}"
            return NonFinite(
                f"image {b}: {name} channel {c} of anchor {a} (level {desc['level']}, cell "
                f"{tuple(desc['cell'])}) is {value}"
                + (" — an fp16 overflow" if operand == "fp16 overflow" else "")
                + f"; {int(bad.sum())} non-finite values in all",
                None,
                b,
                None,
                desc,
                operand,
            )
    for term, led in result.ledger.items():
        if _all_finite(led.values):
            continue
        bad = ~torch.isfinite(led.values)
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            b, a, g = int(led.image[k]), int(led.anchor[k]), int(led.gt[k])
            desc = result.anchors.describe(a)
            operand = _operand(result, targets, term, b, a, g)
            who = f"GT row {g}" if g >= 0 else "background"
            return NonFinite(
                f"term {term}: image {b}, {who}, anchor {a} (level {desc['level']}, cell {tuple(desc['cell'])}) "
                f"is {float(led.values[k])}: {operand}",
                term,
                b,
                g if g >= 0 else None,
                desc,
                operand,
            )
    if not terms_finite:
        bad = [t for t, v in result.terms.items() if not math.isfinite(v)]
        return NonFinite(
            f"term(s) {', '.join(bad)} are not finite although every element is: the sum overflowed float32",
            bad[0],
            None,
            None,
            None,
            "float32 overflow of the sum",
        )
    return None


def _all_finite(tensor: torch.Tensor) -> bool:
    """True when no element is NaN or ±inf; a finite sum proves it in one cheap pass (both propagate)."""
    if not tensor.is_floating_point():
        return True
    if math.isfinite(float(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())  # the sum of large finite values may overflow


def _near_fp16_max(tensor: torch.Tensor) -> bool:
    finite = tensor[torch.isfinite(tensor)]
    return bool(finite.numel()) and float(finite.abs().max()) > FP16_MAX / 2


def _operand(result: LossResult, targets: Targets, term: str, b: int, a: int, g: int) -> str:
    if not bool(torch.isfinite(result.pred_boxes[b, a]).all()):
        return "the predicted box is not finite"
    if g >= 0:
        box = targets.boxes_xyxy()[g]
        if float(box[2] - box[0]) <= 0 or float(box[3] - box[1]) <= 0:
            return "its GT has zero area"
    if term in ("dfl", "cls", "obj"):
        return "log of 0 (a probability underflowed to 0)"
    return "an intermediate overflowed"
