"""What a recipe returns: the framework's numbers plus an exact per-element ledger of them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from yolodbg.anchors import Anchors


@dataclass(frozen=True)
class TermLedger:
    """Per-element contributions of one term, gain-weighted and normalised: they sum to the term.

    One element is one (image, anchor, GT) triple; ``gt`` is the global GT row (see
    :class:`~yolodbg.groundtruth.Targets`) or -1 for background.
    """

    values: Tensor  # (K,) float64
    image: Tensor  # (K,) long
    anchor: Tensor  # (K,) long
    gt: Tensor  # (K,) long
    grid: tuple[int, int] | None = None  # (B, N) when element k is anchor k % N of image k // N

    @classmethod
    def dense(cls, values: Tensor, gt_of_anchor: Tensor) -> TermLedger:
        """From per-anchor values ``(B, N)`` and the GT row of each anchor ``(B, N)`` (-1 = background)."""
        bs, n = values.shape
        image = torch.arange(bs).repeat_interleave(n)
        anchor = torch.arange(n).repeat(bs)
        return cls(values.reshape(-1).double(), image, anchor, gt_of_anchor.reshape(-1), (bs, n))

    def on_grid(self, values: Tensor, bs: int, n: int) -> Tensor:
        """``values`` (K,) of this ledger's elements summed per (image, anchor): ``(B, N)`` float64."""
        if self.grid == (bs, n):
            return values.view(bs, n)
        out = torch.zeros(bs * n, dtype=torch.float64)
        return out.scatter_add_(0, self.image * n + self.anchor, values).view(bs, n)

    @classmethod
    def sparse(cls, values: Tensor, image: Tensor, anchor: Tensor, gt: Tensor) -> TermLedger:
        return cls(values.reshape(-1).double(), image.reshape(-1), anchor.reshape(-1), gt.reshape(-1))

    def total(self) -> float:
        return float(self.values.sum())


@dataclass(frozen=True)
class Positives:
    """Every positive (image, anchor, GT) pair with what the assigner knew about it."""

    image: Tensor  # (P,) long
    anchor: Tensor  # (P,) long
    gt: Tensor  # (P,) long, global GT row
    iou: Tensor  # (P,) IoU of the predicted box with its GT (plain IoU, pixels)
    align: Tensor  # (P,) assigner metric before normalisation (nan where the assigner has none)
    weight: Tensor  # (P,) loss weight of the pair (TAL t̂; 1 where the loss does not weight)
    flags: dict[str, Tensor] = field(default_factory=dict)  # name -> (P,) bool, e.g. "dfl_clipped"


@dataclass(frozen=True)
class GtReason:
    """Why a GT has no (or few) positives: a stable code and a sentence."""

    code: str
    detail: str
    other_gt: int | None = None  # global row of the GT that took its anchors, if any


@dataclass(frozen=True)
class BranchResult:
    """The parts of a :class:`LossResult` one assignment gives, whatever the loss on top of it.

    A recipe's branch (one TAL assignment of Ultralytics' loss, YOLOX's SimOTA batch) returns this;
    :meth:`LossResult.from_branch` fills a result from it. Field meanings are :class:`LossResult`'s.
    """

    ledger: dict[str, TermLedger]
    positives: Positives
    anchors: Anchors
    pred_boxes: Tensor  # (B, N, 4) xyxy input pixels
    pred_scores: Tensor  # (B, N, nc)
    fg: Tensor  # (B, N) bool
    gt_of_anchor: Tensor  # (B, N) long, -1 for background
    target_score: Tensor  # (B, N)
    gt_reasons: dict[int, GtReason] = field(default_factory=dict)

    def assignment(self) -> dict[str, Tensor]:
        """Who is positive and for which GT: an entry of :attr:`LossResult.extra_assignments`."""
        return {"fg": self.fg, "gt_of_anchor": self.gt_of_anchor, "target_score": self.target_score}


@dataclass
class LossResult:
    """A recipe's replay of one batch.

    ``terms`` are the values the framework logs, computed in the framework's own order and
    precision; ``ledger`` holds the same per-element values, which sum to them (the
    conservation check compares the two).
    """

    recipe: str
    params: dict[str, Any]
    reproduces: str
    batch_size: int
    terms: dict[str, float]
    objective: float
    ledger: dict[str, TermLedger]
    positives: Positives
    anchors: Anchors
    pred_boxes: Tensor  # (B, N, 4) decoded predicted boxes, xyxy input pixels
    pred_scores: Tensor  # (B, N, nc) class probabilities (after the activation the framework uses)
    fg: Tensor  # (B, N) bool
    gt_of_anchor: Tensor  # (B, N) long global GT row, -1 for background
    target_score: Tensor  # (B, N) loss weight of each anchor (TAL t̂), 0 for background
    gt_reasons: dict[int, GtReason] = field(default_factory=dict)  # global GT row -> reason
    normalizers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra_terms: dict[str, float] = field(default_factory=dict)  # e.g. per-branch "o2m.box"
    gt_details: dict[int, dict[str, Any]] = field(default_factory=dict)  # global GT row -> JSON-ready extras
    extra_assignments: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # e.g. "one2one": fg, ...
    # name -> (B, N, C) raw head values, for the NaN locator
    inputs: dict[str, Tensor] = field(default_factory=dict)
    # (M,) bool per GT row: some anchor may become its positive under the assigner's geometric rules
    # (None: the scan's recall-ceiling hook works it out)
    gt_reachable: Tensor | None = None

    @classmethod
    def from_branch(
        cls,
        branch: BranchResult,
        *,
        ledger: dict[str, TermLedger] | None = None,
        gt_reasons: dict[int, GtReason] | None = None,
        **other: Any,
    ) -> LossResult:
        """A result whose assignment parts come from ``branch``; ``other`` are the other fields by name.

        ``ledger`` and ``gt_reasons`` replace the branch's when given (a recipe of two branches
        merges both branches' ledgers and reasons).
        """
        parts = {f.name: getattr(branch, f.name) for f in fields(BranchResult)}  # same names, not copied
        if ledger is not None:
            parts["ledger"] = ledger
        if gt_reasons is not None:
            parts["gt_reasons"] = gt_reasons
        return cls(**parts, **other)
