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

import torch

from yolodbg.assigners.tal import TalAssignment
from yolodbg.result import GtReason


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
    n_cand = a.candidates.sum(-1).tolist()  # (B, M)
    n_sel = a.selected.sum(-1).tolist()
    n_pos = a.mask_pos.sum(-1).tolist()
    any_metric = (a.align_metric > 0).any(-1).tolist()
    weight_pos = ((a.align_metric * a.mask_pos) > 0).any(-1).tolist()
    lost_all = a.selected & ~a.mask_pos
    n_lost = lost_all.sum(-1).tolist()
    x1, y1, x2, y2 = gt_bboxes.unsqueeze(2).unbind(-1)
    inside_true = (points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2)
    any_inside = inside_true.any(-1).tolist()
    rows, valid = row_of_slot.tolist(), mask_gt[..., 0].bool().tolist()
    sides = (gt_bboxes[..., 2:] - gt_bboxes[..., :2]).tolist()  # float32 differences, as the box holds them
    for b in range(bs):
        for g in range(n_max):
            row = rows[b][g]
            if row < 0:
                continue
            w, h = sides[b][g]
            if not valid[b][g]:
                reasons[row] = GtReason(
                    "treated_as_padding",
                    "its pixel coordinates sum to ≤ 0, so the loss takes it for a padding row and ignores it",
                )
                continue
            pos, cand, sel = n_pos[b][g], n_cand[b][g], n_sel[b][g]
            if pos >= topk:
                continue
            if cand == 0:
                reasons[row] = GtReason(
                    "no_anchor_inside",
                    f"{w:.1f}×{h:.1f} px box holds no anchor centre"
                    + (f" even floored to {a.min_side:g} px" if a.min_side > 0 else "")
                    + " on any level",
                )
                continue
            if not any_metric[b][g] or (pos > 0 and not weight_pos[b][g]):
                reasons[row] = GtReason(
                    "zero_metric",
                    f"{cand} anchors inside, but score^α·CIoU^β is 0 for all of them (no overlap or score "
                    "underflow); its positives carry zero weight",
                )
                continue
            if n_lost[b][g]:
                lost = lost_all[b, g]
                takers = a.mask_pos[b, :, lost].float().sum(-1)  # per other slot: how many it took
                takers[g] = 0
                if float(takers.max()) > 0:
                    j = int(takers.argmax())
                    other = rows[b][j]
                    reasons[row] = GtReason(
                        "lost_conflict",
                        f"{n_lost[b][g]} of its {sel} selected anchors went to GT row {other} (larger CIoU)",
                        other_gt=other,
                    )
                    continue
                reasons[row] = GtReason(
                    "topk2_filtered", f"the second top-k kept {pos} of its {sel} selected anchors"
                )
                continue
            if not any_inside[b][g]:
                reasons[row] = GtReason(
                    "floor_only",
                    f"{w:.1f}×{h:.1f} px box holds no anchor centre; its {pos} positives come from the "
                    f"{a.min_side:g} px small-box floor",
                )
                continue
            if cand < topk:
                reasons[row] = GtReason(
                    "few_candidates", f"only {cand} anchor centres inside the box (top-k is {topk})"
                )
    return reasons
