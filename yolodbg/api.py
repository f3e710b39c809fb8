"""Python entry points: replay a batch straight from tensors, or explain a bundle file.

Example (``model_output`` and ``batch`` as the trainer hands them to its loss)::

    from yolodbg.api import replay

    res = replay(model_output, batch, recipe="yolov8")
    res.terms  # {'box': 2.5995, 'cls': 6.3934, 'dfl': 4.1922}, as the trainer logs them
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from yolodbg import bundle as bundle_mod
from yolodbg import groundtruth
from yolodbg.recipes import get_recipe
from yolodbg.recipes.base import Recipe
from yolodbg.result import LossResult


@dataclass
class Replay:
    """A :class:`LossResult` with the per-anchor views the parity tests compare."""

    result: LossResult
    targets: groundtruth.Targets

    @property
    def terms(self) -> dict[str, float]:
        return self.result.terms

    @property
    def objective(self) -> float:
        return self.result.objective

    @property
    def fg(self) -> torch.Tensor:
        return self.result.fg

    @property
    def gt_index(self) -> torch.Tensor:
        """(B, N) index of the assigned GT among its image's GTs; -1 for background."""
        rows = self.result.gt_of_anchor
        local = self.targets.local_index()
        out = torch.full_like(rows, -1)
        mask = rows >= 0
        out[mask] = local[rows[mask]]
        return out

    @property
    def target_score(self) -> torch.Tensor:
        return self.result.target_score


def replay(
    outputs: Any,
    targets: dict[str, Any],
    recipe: str | Recipe = "yolov8",
    params: dict[str, Any] | None = None,
    input_size: tuple[int, int] | None = None,
    strides: tuple[float, ...] | None = None,
    head: str | None = None,
    anchors: Any = None,
    nc: int | None = None,
) -> Replay:
    """Replay a recipe on a raw head output and a batch's targets (``batch_idx``, ``cls``, ``bboxes``).

    ``anchors``: anchor-based heads (yolov5) only, per level ``[[w, h], ...]`` in input pixels
    (``Detect.anchors × stride``); without them the recipe uses its defaults and warns.
    """
    if isinstance(recipe, str):
        rec = get_recipe(recipe)
        if params:
            rec = rec.with_params(params)
    else:
        rec = recipe
    b = bundle_mod.from_object(
        {
            "yolodbg": 1,
            "outputs": outputs,
            "targets": targets,
            "head": head or rec.heads[0],
            "anchors": anchors,
        },
        input_size=input_size,
        strides=strides,
        nc=nc,
    )
    size, nc = rec.input_layout(b)
    t = groundtruth.from_batch(b.targets, b.batch_size, size, nc)
    return Replay(rec.run(b, t), t)
