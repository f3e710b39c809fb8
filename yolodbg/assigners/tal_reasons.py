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
    # per (image, slot) counts from the sparse candidate pairs and foreground anchors: positives and
    # selections lie on candidate pairs (or, for positives, one slot per foreground anchor)
    b_i, g_i, a_i = a.pairs if a.pairs is not None else a.candidates.nonzero(as_tuple=True)
    key = b_i * n_max + g_i
    b_fg, a_fg = a.fg.nonzero(as_tuple=True)
    s_fg = a.gt_slot[b_fg, a_fg]
    fg_key = b_fg * n_max + s_fg

    def per_slot(k: torch.Tensor) -> list[list[int]]:
        return torch.bincount(k, minlength=bs * n_max).view(bs, n_max).tolist()

    selected = a.selected[b_i, g_i, a_i]
    n_cand = per_slot(key)
    n_sel = per_slot(key[selected])
    n_pos = per_slot(fg_key)
    any_metric = per_slot(key[a.align_metric[b_i, g_i, a_i] > 0])
    weight_pos = per_slot(fg_key[a.align_metric[b_fg, s_fg, a_fg] > 0])
    n_lost = per_slot(key[selected & ~a.mask_pos[b_i, g_i, a_i]])
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
                lost = a.selected[b, g] & ~a.mask_pos[b, g]
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
            if not _any_centre_inside(points, gt_bboxes[b, g]):
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


def _any_centre_inside(points: torch.Tensor, box: torch.Tensor) -> bool:
    """Some anchor centre lies strictly inside the true (unfloored) box."""
    x1, y1, x2, y2 = box.tolist()
    px, py = points[:, 0], points[:, 1]
    return bool(((px > x1) & (px < x2) & (py > y1) & (py < y2)).any())
