"""YOLOv5 label assignment (``ComputeLoss.build_targets``, v7.0): anchor-shape ratio + neighbour cells.

Per level, each GT is paired with every anchor whose shape is within ``anchor_t`` of its own
(``max(w/aw, aw/w, h/ah, ah/h) < anchor_t``, grid units), and each pair is placed in the GT
centre's own cell plus the nearer horizontal and vertical neighbour (offset ``g`` = 0.5 cell):
left if ``gx mod 1 < g`` and ``gx > 1``, right if ``(W − gx) mod 1 < g`` and ``W − gx > 1``, up /
down likewise. One positive per (GT, anchor, cell); a GT owns positives on several anchors,
cells and levels. Matches come out in the framework's order (offset, then anchor, then GT row),
which decides who wins when two positives write the same objectness cell.

Cell indices are ``trunc(g_xy − offset)`` clamped to the grid, and — as in the framework, whose
clamp acts in place on a view — the *clamped* cell is also the one the regression target is
measured from (matters only for centres on or beyond the image edge).

GT reason codes (stable, used in JSON and snapshots):

- ``anchor_ratio``: no anchor on any level is within ``anchor_t`` of its shape: no positive;
- ``lost_conflict``: it has positives, but every objectness cell it hit was written last by
  another GT's positive (``other_gt``), so its objectness targets are that GT's IoUs;
- ``single_anchor``: only one (level, anchor) pair matches its shape, so it has at most 3 cells;
- ``few_cells``: a matched anchor got fewer than 3 cells: its centre is within one cell of the
  image border or exactly on a half-cell line, so a neighbour cell is not added.

YOLOv5 has no padding rows (targets are a flat list), so there is no ``treated_as_padding``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from yolodbg.result import GtReason

OFFSET_NAMES = ("centre", "left", "up", "right", "down")
_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))  # × g, subtracted from g_xy


@dataclass(frozen=True)
class LevelMatches:
    """The positives of one level, in the framework's order (n of them)."""

    image: Tensor  # (n,) long
    slot: Tensor  # (n,) long anchor index within the cell
    gj: Tensor  # (n,) long cell row (clamped)
    gi: Tensor  # (n,) long cell column (clamped)
    gt: Tensor  # (n,) long global GT row
    cls: Tensor  # (n,) long class index
    offset: Tensor  # (n,) long index into OFFSET_NAMES
    clamped: Tensor  # (n,) bool: the cell index was clamped to the grid
    tbox: Tensor  # (n, 4) float32 regression target (x, y from the cell corner, w, h), grid units
    anchor_wh: Tensor  # (n, 2) float32 anchor size, grid units
    ratio: Tensor  # (n,) float32 worst side ratio of GT and anchor shapes (< anchor_t)

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class V5Assignment:
    levels: tuple[LevelMatches, ...]
    level_shapes: tuple[tuple[int, int], ...]  # (H, W) per level
    anchors_grid: Tensor  # (nl, na, 2) anchors in grid units
    anchor_t: float
    g: float


def target_rows(batch_idx: Tensor, cls: Tensor, bboxes: Tensor) -> Tensor:
    """``(M, 6)`` float32 rows ``(image, class, cx, cy, w, h)`` as YOLOv5's collate hands them to the loss."""
    return torch.cat(
        (batch_idx.to(torch.float32)[:, None], cls.to(torch.float32)[:, None], bboxes.float()), 1
    )


def match_level(
    rows: Tensor, shape: tuple[int, int], anchors: Tensor, anchor_t: float, g: float
) -> LevelMatches:
    """One level of ``build_targets``: ``rows (M, 6)``, grid ``(H, W)``, ``anchors (na, 2)`` grid units."""
    h, w = shape
    m = rows.shape[0]
    size = torch.tensor([w, h], dtype=torch.float32)
    gxy_all, gwh_all = rows[:, 2:4] * size, rows[:, 4:6] * size
    r = gwh_all[None] / anchors[:, None]  # (na, M, 2)
    ratio_all = torch.max(r, 1 / r).max(2)[0]  # (na, M)
    slot, gt = (ratio_all < anchor_t).nonzero(as_tuple=True) if m else (torch.zeros(0, dtype=torch.long),) * 2
    gxy = gxy_all[gt]
    inv = size - gxy
    left, up = ((gxy % 1 < g) & (gxy > 1)).T
    right, down = ((inv % 1 < g) & (inv > 1)).T
    take = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, n) in offset order
    offset, k = take.nonzero(as_tuple=True)
    off = torch.tensor(_OFFSETS, dtype=torch.float32) * g
    gxy_k = gxy[k]
    gij = (gxy_k - off[offset]).long()
    limit = torch.tensor([w - 1, h - 1])
    cell = torch.minimum(gij.clamp(min=0), limit)
    clamped = (cell != gij).any(1)
    gt_k = gt[k]
    return LevelMatches(
        image=rows[gt_k, 0].long(),
        slot=slot[k],
        gj=cell[:, 1],
        gi=cell[:, 0],
        gt=gt_k,
        cls=rows[gt_k, 1].long(),
        offset=offset,
        clamped=clamped,
        tbox=torch.cat((gxy_k - cell, gwh_all[gt_k]), 1),
        anchor_wh=anchors[slot[k]],
        ratio=ratio_all[slot[k], gt_k],
    )


def build_targets(
    rows: Tensor,
    level_shapes: tuple[tuple[int, int], ...],
    anchors_grid: Tensor,
    anchor_t: float = 4.0,
    g: float = 0.5,
) -> V5Assignment:
    """All levels: ``rows (M, 6)``, ``anchors_grid (nl, na, 2)`` -> :class:`V5Assignment`."""
    levels = tuple(
        match_level(rows, s, a, anchor_t, g) for s, a in zip(level_shapes, anchors_grid, strict=True)
    )
    return V5Assignment(levels, tuple(level_shapes), anchors_grid, anchor_t, g)


def best_anchor(a: V5Assignment, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per GT ``(M,)`` the smallest shape ratio over every level and anchor (inf for a zero side), and
    ``(M, 2)`` the (level, slot) of that anchor."""
    m = rows.shape[0]
    best = torch.full((m,), math.inf)
    best_at = torch.zeros(m, 2, dtype=torch.long)
    if m == 0:
        return best, best_at
    for i, (shape, anc) in enumerate(zip(a.level_shapes, a.anchors_grid, strict=True)):
        size = torch.tensor([shape[1], shape[0]], dtype=torch.float32)
        r = (rows[:, 4:6] * size)[None] / anc[:, None]
        value, slot = torch.max(r, 1 / r).max(2)[0].nan_to_num(nan=math.inf, posinf=math.inf).min(0)
        better = value < best
        best = torch.where(better, value, best)
        best_at[better] = torch.stack((torch.full_like(slot, i), slot), 1)[better]
    return best, best_at


def _neighbour_note(gx: float, gy: float, w: int, h: int) -> str:
    edges = [name for name, v in (("left", gx), ("top", gy), ("right", w - gx), ("bottom", h - gy)) if v <= 1]
    if edges:
        return f"its centre is within one cell of the {'/'.join(edges)} border"
    return "its centre lies exactly on a half-cell line"


def _pair_stats(
    a: V5Assignment, m: int, level_shapes: tuple[tuple[int, int], ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """Per GT ``(M,)``: matched (level, anchor) pairs, how many of them got fewer than 3 distinct cells, and
    the level of one such pair (-1 if none)."""
    na = max((int(lv.slot.max()) + 1 for lv in a.levels if len(lv)), default=1)
    span = max(h * w for h, w in level_shapes) if level_shapes else 1
    nl = len(a.levels)
    keys = [
        ((lv.gt * nl + i) * na + lv.slot) * span + lv.gj * level_shapes[i][1] + lv.gi
        for i, lv in enumerate(a.levels)
    ]
    cells = torch.unique(torch.cat(keys)) if keys else torch.zeros(0, dtype=torch.long)
    pairs, per_pair = torch.unique(
        cells // span, return_counts=True
    )  # pair key = (gt * nl + level) * na + slot
    gt_of_pair, level_of_pair = pairs // (nl * na), pairs // na % nl
    n_pairs = torch.bincount(gt_of_pair, minlength=m)
    short = per_pair < 3
    n_short = torch.bincount(gt_of_pair[short], minlength=m)
    short_level = torch.full((m,), -1, dtype=torch.long)
    short_level[gt_of_pair[short]] = level_of_pair[short]
    return n_pairs, n_short, short_level


def _anchor_ratio_reason(
    a: V5Assignment, ratio: float, best_at: Tensor, anchors_px: Tensor, pw: float, ph: float
) -> GtReason:
    """No positive: its shape is more than ``anchor_t`` off every anchor (``build_targets``' ratio test)."""
    lvl, slot = (int(v) for v in best_at)
    aw, ah = (float(v) for v in anchors_px[lvl, slot])
    how = "has a zero side, so it is infinitely far from" if ratio == float("inf") else f"is ×{ratio:.2f} off"
    return GtReason(
        "anchor_ratio",
        f"its {pw:.1f}×{ph:.1f} px shape {how} the closest anchor ({aw:g}×{ah:g} px, level {lvl}); "
        f"anchor_t is {a.anchor_t:g}, so no anchor on any level takes it",
    )


def _lost_conflict_reason(a: V5Assignment, r: int, count: int, owner: list[Tensor]) -> GtReason:
    """Positives, but every objectness cell of them holds another GT's IoU (the later write wins)."""
    takers = torch.cat([o[lv.gt == r] for lv, o in zip(a.levels, owner, strict=True)])
    other = int(torch.mode(takers).values)
    return GtReason(
        "lost_conflict",
        f"all {count} of its positive cells hold the objectness target (IoU) of GT row {other}, "
        "whose positive wrote the same cell later (CPU write order)",
        other_gt=other,
    )


def _single_anchor_reason(
    a: V5Assignment, r: int, count: int, anchors_px: Tensor, pw: float, ph: float
) -> GtReason:
    """Only one (level, anchor) pair passes the ratio test."""
    i = next(i for i, lv in enumerate(a.levels) if bool((lv.gt == r).any()))
    slot = int(a.levels[i].slot[a.levels[i].gt == r][0])
    aw, ah = (float(v) for v in anchors_px[i, slot])
    return GtReason(
        "single_anchor",
        f"only anchor {aw:g}×{ah:g} px (level {i}) is within ×{a.anchor_t:g} of its {pw:.1f}×{ph:.1f} px "
        f"shape, so it has {count} positive(s)",
    )


def _few_cells_reason(rows: Tensor, r: int, lvl: int, level_shapes: tuple[tuple[int, int], ...]) -> GtReason:
    """A matched anchor got fewer than 3 cells: its centre is near a border or on a half-cell line."""
    h, w = level_shapes[lvl]
    gx, gy = float(rows[r, 2]) * w, float(rows[r, 3]) * h
    return GtReason(
        "few_cells",
        f"fewer than 3 cells for a matched anchor on level {lvl}: " + _neighbour_note(gx, gy, w, h),
    )


def reasons(
    a: V5Assignment,
    rows: Tensor,
    level_shapes: tuple[tuple[int, int], ...],
    anchors_px: Tensor,
    input_size: tuple[int, int],
    owner: list[Tensor],
) -> dict[int, GtReason]:
    """Reason per global GT row with no or few positives.

    ``owner[i]`` ``(n_i,)`` is, for each positive of level i, the GT whose IoU its objectness cell
    holds after every write (itself unless another positive wrote that cell later).
    """
    out: dict[int, GtReason] = {}
    m = rows.shape[0]
    if m == 0:
        return out
    ih, iw = input_size
    count = sum((torch.bincount(lv.gt, minlength=m) for lv in a.levels), torch.zeros(m, dtype=torch.long))
    kept = sum(
        (torch.bincount(lv.gt[o == lv.gt], minlength=m) for lv, o in zip(a.levels, owner, strict=True)),
        torch.zeros(m, dtype=torch.long),
    )
    n_pairs, n_short, short_level = _pair_stats(a, m, level_shapes)
    flagged = (count == 0) | (kept == 0) | (n_pairs == 1) | (n_short > 0)
    best = best_at = None
    for r in flagged.nonzero().flatten().tolist():
        pw, ph = float(rows[r, 4]) * iw, float(rows[r, 5]) * ih
        if int(count[r]) == 0:
            best, best_at = best_anchor(a, rows) if best is None else (best, best_at)
            out[r] = _anchor_ratio_reason(a, float(best[r]), best_at[r], anchors_px, pw, ph)
        elif int(kept[r]) == 0:
            out[r] = _lost_conflict_reason(a, r, int(count[r]), owner)
        elif int(n_pairs[r]) == 1:
            out[r] = _single_anchor_reason(a, r, int(count[r]), anchors_px, pw, ph)
        else:
            out[r] = _few_cells_reason(rows, r, int(short_level[r]), level_shapes)
    return out
