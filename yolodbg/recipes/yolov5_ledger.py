"""From the YOLOv5 replay's unreduced values to a :class:`LossResult`: ledger, positives, notes.

Attribution: a positive's box and class values go to its GT; each cell's objectness value goes
to the GT whose IoU the cell holds after every write (the last writer on the CPU), every other
cell's to the background. Per-element values are gain-weighted and divided by the same counts
the framework divides by (positives of the level; cells of the level), so they sum to the items.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from yolodbg.assigners import yolov5 as assigner
from yolodbg.heads import yolov5 as head
from yolodbg.heads.lazy import LazyAnchorTensor, LazyMapping
from yolodbg.recipes import yolov5_loss as loss
from yolodbg.result import LossResult, Positives, TermLedger

if TYPE_CHECKING:
    from yolodbg.recipes.yolov5 import YoloV5


def level_name(i: int, stride: float) -> str:
    """``P3`` for stride 8 (the usual pyramid naming), ``L{i}`` when the stride is not a power of two."""
    p = math.log2(stride) if stride > 0 else 0.5
    return f"P{int(p)}" if p == int(p) else f"L{i}"


@functools.lru_cache(maxsize=4)
def _dense_index(bs: int, n: int) -> tuple[Tensor, Tensor]:
    """``(B·N,)`` image and anchor index of a dense ledger (cached: batches of one shape share them; read-only)."""
    return torch.arange(bs).repeat_interleave(n), torch.arange(n).repeat(bs)


def _flags(a: assigner.V5Assignment, flat_anchor: Tensor, owner: Tensor, n_total: int) -> dict[str, Tensor]:
    """Per positive: whether another GT's IoU holds its objectness cell, whether its cell index was
    clamped, whether the same GT hit the same cell twice (a centre on a cell corner), and which
    offset brought it in (``offset_centre`` / ``_left`` / ``_up`` / ``_right`` / ``_down``).
    The diagnostic flags come first: reports list flags in this order."""
    lv = a.levels
    offset = torch.cat([m.offset for m in lv])
    gt = torch.cat([m.gt for m in lv])
    key = gt * n_total + flat_anchor  # a GT lives in one image
    _, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    flags = {
        "obj_overwritten": owner != gt,
        "cell_clamped": torch.cat([m.clamped for m in lv]),
        "duplicate_cell": counts[inv] > 1,
    }
    flags.update({f"offset_{name}": offset == k for k, name in enumerate(assigner.OFFSET_NAMES)})
    return flags


@dataclass(frozen=True)
class _DenseMaps:
    """The ``(B, N)`` per-anchor maps the levels write into, each level its own slice."""

    obj: Tensor  # float64 objectness contributions
    gt_of_anchor: Tensor  # long, -1 off the positives
    target_score: Tensor  # float32 objectness targets


@dataclass(frozen=True)
class _LevelPositives:
    """One level's positives: their box and class contributions, flat anchor index and cell owner."""

    box: Tensor
    cls: Tensor
    flat: Tensor
    owner: Tensor
    conflicts: int


def _write_level(
    i: int,
    m: assigner.LevelMatches,
    t: loss.LevelTerms,
    out: head.V5Output,
    lp: loss.V5LossParams,
    dense: _DenseMaps,
    normalizers: dict[str, float],
) -> _LevelPositives:
    """One level of ``ComputeLoss.__call__``: its objectness cells into the dense maps, its normalisers
    (positives, cells, balance) recorded, and its positives' box and class values divided as the framework does."""
    bs = out.batch_size
    g_box, g_obj, g_cls = lp.gains
    h, w = out.level_shapes[i]
    start, cells = out.level_offsets[i], out.na * h * w
    name = level_name(i, out.strides[i])
    n, numel = len(m), t.obj_target.numel()
    normalizers[f"positives.{name}"] = float(n)
    normalizers[f"obj_cells.{name}"] = float(numel)
    normalizers[f"balance.{name}"] = float(lp.balance[i])
    part = dense.obj[:, start : start + cells]
    part.copy_(t.obj_bce.detach().reshape(bs, -1))
    part.mul_(g_obj * lp.balance[i] / numel)
    dense.target_score[:, start : start + cells] = t.obj_target.reshape(bs, -1)
    flat = start + (m.slot * h + m.gj) * w + m.gi
    win = loss.winners(m, t)
    owner = m.gt[win]
    dense.gt_of_anchor[m.image, flat] = owner
    conflicts = int((owner != m.gt).sum())
    box = t.box_loss.detach().double() * (g_box / n) if n else torch.zeros(0, dtype=torch.float64)
    if t.cls_bce.numel():
        cls = t.cls_bce.detach().sum(1, dtype=torch.float64) * (g_cls / (n * t.cls_bce.shape[1]))
    else:
        cls = torch.zeros(n, dtype=torch.float64)
    return _LevelPositives(box, cls, flat, owner, conflicts)


def assemble(
    *,
    recipe: YoloV5,
    out: head.V5Output,
    rows: Tensor,
    assignment: assigner.V5Assignment,
    terms: list[loss.LevelTerms],
    lp: loss.V5LossParams,
    items: dict[str, float],
    objective: float,
    gain_info: dict[str, float],
    warnings: list[str],
) -> LossResult:
    bs = out.batch_size
    n_total = out.num_anchors
    dense = _DenseMaps(
        obj=torch.empty(bs, n_total, dtype=torch.float64),
        gt_of_anchor=torch.full((bs, n_total), -1, dtype=torch.long),
        target_score=torch.empty(bs, n_total, dtype=torch.float32),
    )
    normalizers: dict[str, float] = {}
    levels = [
        _write_level(i, m, t, out, lp, dense, normalizers)
        for i, (m, t, _) in enumerate(zip(assignment.levels, terms, out.level_shapes, strict=True))
    ]
    for k, v in zip(("box", "obj", "cls"), lp.gains, strict=True):
        normalizers[f"gain.{k}"] = float(v)
    owner_parts = [lv.owner for lv in levels]
    ledger, positives = _ledger_and_positives(assignment, terms, levels, dense, n_total)
    reasons = LazyMapping(  # report-only: built when a report asks for a reason
        lambda: assigner.reasons(
            assignment, rows, out.level_shapes, out.anchors_px, out.input_size, owner_parts
        )
    )
    conflicts = sum(lv.conflicts for lv in levels)
    gt_of_anchor = dense.gt_of_anchor
    return LossResult(
        recipe=recipe.name,
        params=dict(recipe.params),
        reproduces=recipe.reproduces,
        batch_size=bs,
        terms=items,
        objective=objective,
        ledger=ledger,
        positives=positives,
        anchors=head.anchors(out),
        pred_boxes=head.lazy_boxes(out),  # computed per anchor on demand: the report needs a few
        pred_scores=head.lazy_scores(out),
        fg=gt_of_anchor >= 0,
        gt_of_anchor=gt_of_anchor,
        target_score=dense.target_score,
        gt_reasons=reasons,
        gt_details=LazyMapping(lambda: _gt_details(assignment, out, rows)),
        normalizers=normalizers,
        notes=_notes(recipe, out, lp, normalizers, gain_info, conflicts),
        warnings=warnings,
        inputs=_raw_inputs(out),
    )


def _ledger_and_positives(
    assignment: assigner.V5Assignment,
    terms: list[loss.LevelTerms],
    levels: list[_LevelPositives],
    dense: _DenseMaps,
    n_total: int,
) -> tuple[dict[str, TermLedger], Positives]:
    """The ledger (box and class sparse on the positives, objectness dense on every cell) and the
    positives' table, every level's rows in level order."""
    bs = dense.obj.shape[0]
    image = torch.cat([m.image for m in assignment.levels])
    gt = torch.cat([m.gt for m in assignment.levels])
    flat = torch.cat([lv.flat for lv in levels])
    owner = torch.cat([lv.owner for lv in levels])
    ledger = {
        "box": TermLedger.sparse(torch.cat([lv.box for lv in levels]), image, flat, gt),
        "obj": TermLedger(
            dense.obj.view(-1), *_dense_index(bs, n_total), dense.gt_of_anchor.view(-1), (bs, n_total)
        ),
        "cls": TermLedger.sparse(torch.cat([lv.cls for lv in levels]), image, flat, gt),
    }
    positives = Positives(
        image=image,
        anchor=flat,
        gt=gt,
        iou=torch.cat([t.plain_iou.detach() for t in terms]).double(),
        align=torch.cat([m.ratio for m in assignment.levels]).double(),
        weight=torch.ones(len(gt), dtype=torch.float64),
        flags=_flags(assignment, flat, owner, n_total),
    )
    return ledger, positives


def _raw_inputs(out: head.V5Output) -> dict[str, LazyAnchorTensor]:
    """The raw logits per anchor, for the non-finite locator."""
    return {
        "box logit": head.lazy_raw(out, slice(0, 4), 4),
        "objectness logit": head.lazy_raw(out, slice(4, 5), 1),
        "class logit": head.lazy_raw(out, slice(5, None), out.nc),
    }


def _gt_details(a: assigner.V5Assignment, out: head.V5Output, rows: Tensor) -> dict[int, dict]:
    """Per GT: its positives per level and the (level, anchor) pairs that matched its shape (JSON extras)."""
    m = rows.shape[0]
    if m == 0:
        return {}
    names = [level_name(i, s) for i, s in enumerate(out.strides)]
    per_level = torch.stack([torch.bincount(lv.gt, minlength=m) for lv in a.levels], 1).tolist()
    keys = (
        torch.cat([(lv.gt * out.nl + i) * out.na + lv.slot for i, lv in enumerate(a.levels)])
        .unique()
        .tolist()
    )
    anchors: dict[int, list[str]] = {}
    px = out.anchors_px.tolist()
    for k in keys:
        g, rest = divmod(k, out.nl * out.na)
        lvl, slot = divmod(rest, out.na)
        w, h = px[lvl][slot]
        anchors.setdefault(g, []).append(f"{names[lvl]} anchor {slot} ({w:g}×{h:g} px)")
    ratio = assigner.best_anchor(a, rows)[0].tolist()
    return {
        r: {
            "positives_by_level": {n: c for n, c in zip(names, per_level[r], strict=True) if c},
            "matched_anchors": anchors.get(r, []),
            "best_anchor_ratio": ratio[r] if math.isfinite(ratio[r]) else None,
        }
        for r in range(m)
    }


def _notes(
    recipe: YoloV5,
    out: head.V5Output,
    lp: loss.V5LossParams,
    normalizers: dict[str, float],
    gain_info: dict[str, float],
    conflicts: int,
) -> list[str]:
    names = [level_name(i, s) for i, s in enumerate(out.strides)]
    counts = ", ".join(f"{n} {int(normalizers[f'positives.{n}'])}" for n in names)
    balance = "/".join(f"{b:g}" for b in lp.balance)
    if recipe.params["gain.rescale"]:
        how = (
            f"hyp {recipe.params['gain.box']:g}/{recipe.params['gain.obj']:g}/{recipe.params['gain.cls']:g} rescaled "
            f"as train.py does for nl {out.nl}, nc {out.nc}, imgsz {int(gain_info['imgsz'])}"
        )
    else:
        how = "hyp values, not rescaled"
    notes = [
        f"positives per level: {counts}; box = gain × mean(1 − {lp.box.upper()}) over each level's positives, so "
        "one positive weighs gain / (its level's count); cls likewise over count × nc",
        f"obj = gain × Σ_level balance ({balance}) × mean BCE over all B·na·H·W cells of the level; a positive cell's "
        "target is its clamped IoU, every other cell's 0 (background)",
        f"gains box {lp.gains[0]:.6g}, obj {lp.gains[1]:.6g}, cls {lp.gains[2]:.6g} ({how})",
        f"objective = (box + obj + cls) × batch size {out.batch_size}, what the trainer back-propagates",
        f"align column = anchor shape ratio max(w/aw, aw/w, h/ah, ah/h) of each positive (matches below "
        f"{recipe.params['assigner.anchor_t']:g})",
    ]
    if out.nc == 1:
        notes.append("nc = 1: YOLOv5 has no class term for a single class (cls = 0)")
    if conflicts:
        notes.append(
            f"{conflicts} positives share their objectness cell with a later-written positive of another GT; the cell "
            "holds the last write's IoU (CPU order) and its objectness is attributed to that GT"
        )
    return notes
