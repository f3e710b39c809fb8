"""Why a GT got no (or few) positives under task-aligned assignment: reason codes.

Codes (stable, used in JSON and snapshots):

- ``treated_as_padding``: its pixel coordinates sum to ≤ 0, so the framework takes it for a
  padding row and ignores it;
- ``no_anchor_inside``: no anchor centre lies inside the box, even after the small-box floor;
- ``zero_metric``: anchors were inside, but score^α · CIoU^β is 0 for all of them (score
  underflow or no overlap), so any positive it has carries zero weight;
- ``lost_conflict``: anchors it selected were claimed by a GT of larger CIoU (``other_gt``);
- ``topk2_filtered``: the second top-k (one-to-one branch) dropped its anchors;
- ``few_candidates``: fewer anchor centres inside the (floored) box than ``topk``;
- ``floor_only``: no anchor centre inside the true box; its positives exist only because the
  small-box floor enlarged it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from yolodbg.assigners.tal import TalAssignment
from yolodbg.result import GtReason


@dataclass(frozen=True)
class _SlotCounts:
    """Per (image, slot) counts, as nested lists ``[b][g]``, of what each step kept for the GT."""

    cand: list[list[int]]  # step A: candidate anchors
    sel: list[list[int]]  # step C: selected (top-k and candidate)
    pos: list[list[int]]  # final positives
    any_metric: list[list[int]]  # candidates of t > 0
    weight_pos: list[list[int]]  # positives of t > 0
    lost: list[list[int]]  # selected but not positive (step D or E took them)


def _slot_counts(a: TalAssignment, bs: int, n_max: int) -> _SlotCounts:
    """Counts from the sparse candidate pairs and foreground anchors: positives and selections lie on
    candidate pairs (or, for positives, one slot per foreground anchor)."""
    b_i, g_i, a_i = a.pairs if a.pairs is not None else a.candidates.nonzero(as_tuple=True)
    key = b_i * n_max + g_i
    b_fg, a_fg = a.fg.nonzero(as_tuple=True)
    s_fg = a.gt_slot[b_fg, a_fg]
    fg_key = b_fg * n_max + s_fg

    def per_slot(k: torch.Tensor) -> list[list[int]]:
        return torch.bincount(k, minlength=bs * n_max).view(bs, n_max).tolist()

    selected = a.selected[b_i, g_i, a_i]
    return _SlotCounts(
        cand=per_slot(key),
        sel=per_slot(key[selected]),
        pos=per_slot(fg_key),
        any_metric=per_slot(key[a.align_metric[b_i, g_i, a_i] > 0]),
        weight_pos=per_slot(fg_key[a.align_metric[b_fg, s_fg, a_fg] > 0]),
        lost=per_slot(key[selected & ~a.mask_pos[b_i, g_i, a_i]]),
    )


def _conflict_reason(
    a: TalAssignment, b: int, g: int, rows: list[list[int]], lost: int, sel: int, pos: int
) -> GtReason:
    """Selected anchors it lost: to the GT that took most of them (step D), else to the second top-k (E)."""
    lost_mask = a.selected[b, g] & ~a.mask_pos[b, g]
    takers = a.mask_pos[b, :, lost_mask].float().sum(-1)  # per other slot: how many it took
    takers[g] = 0
    if float(takers.max()) > 0:
        j = int(takers.argmax())
        other = rows[b][j]
        return GtReason(
            "lost_conflict",
            f"{lost} of its {sel} selected anchors went to GT row {other} (larger CIoU)",
            other_gt=other,
        )
    return GtReason("topk2_filtered", f"the second top-k kept {pos} of its {sel} selected anchors")


def _slot_reason(
    a: TalAssignment,
    c: _SlotCounts,
    b: int,
    g: int,
    rows: list[list[int]],
    side: tuple[float, float],
    gt_bboxes: torch.Tensor,
    points: torch.Tensor,
    topk: int,
) -> GtReason | None:
    """The first step, in assignment order, that left this valid GT with fewer than ``topk`` positives."""
    w, h = side
    pos, cand, sel = c.pos[b][g], c.cand[b][g], c.sel[b][g]
    if pos >= topk:
        return None
    if cand == 0:
        return GtReason(
            "no_anchor_inside",
            f"{w:.1f}×{h:.1f} px box holds no anchor centre"
            + (f" even floored to {a.min_side:g} px" if a.min_side > 0 else "")
            + " on any level",
        )
    if not c.any_metric[b][g] or (pos > 0 and not c.weight_pos[b][g]):
        return GtReason(
            "zero_metric",
            f"{cand} anchors inside, but score^α·CIoU^β is 0 for all of them (no overlap or score "
            "underflow); its positives carry zero weight",
        )
    if c.lost[b][g]:
        return _conflict_reason(a, b, g, rows, c.lost[b][g], sel, pos)
    if not _any_centre_inside(points, gt_bboxes[b, g]):
        return GtReason(
            "floor_only",
            f"{w:.1f}×{h:.1f} px box holds no anchor centre; its {pos} positives come from the "
            f"{a.min_side:g} px small-box floor",
        )
    if cand < topk:
        return GtReason("few_candidates", f"only {cand} anchor centres inside the box (top-k is {topk})")
    return None


def tal_reasons(
    a: TalAssignment,
    row_of_slot: torch.Tensor,
    gt_bboxes: torch.Tensor,
    points: torch.Tensor,
    mask_gt: torch.Tensor,
    topk: int,
) -> dict[int, GtReason]:
    """Reason per global GT row, for the GTs with fewer positives than ``topk`` (others get none)."""
    reasons: dict[int, GtReason] = {}
    bs, n_max = row_of_slot.shape
    if n_max == 0:
        return reasons
    counts = _slot_counts(a, bs, n_max)
    rows, valid = row_of_slot.tolist(), mask_gt[..., 0].bool().tolist()
    sides = (gt_bboxes[..., 2:] - gt_bboxes[..., :2]).tolist()  # float32 differences, as the box holds them
    for b in range(bs):
        for g in range(n_max):
            row = rows[b][g]
            if row < 0:
                continue
            if not valid[b][g]:
                reasons[row] = GtReason(
                    "treated_as_padding",
                    "its pixel coordinates sum to ≤ 0, so the loss takes it for a padding row and ignores it",
                )
                continue
            reason = _slot_reason(a, counts, b, g, rows, sides[b][g], gt_bboxes, points, topk)
            if reason is not None:
                reasons[row] = reason
    return reasons


def _any_centre_inside(points: torch.Tensor, box: torch.Tensor) -> bool:
    """Some anchor centre lies strictly inside the true (unfloored) box."""
    x1, y1, x2, y2 = box.tolist()
    px, py = points[:, 0], points[:, 1]
    return bool(((px > x1) & (px < x2) & (py > y1) & (py < y2)).any())
