"""Breakdown: a recipe's ledger -> per GT, per image, background, top negatives, checks.

Reduction happens here and only here: every per-GT, per-image and background number is a
float64 sum of ledger elements, and the conservation check verifies that those sums add
up to the terms the framework logs (docs/design.md, the pipeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from yolodbg.anchors import Anchors
from yolodbg.bundle import ImageInfo
from yolodbg.geometry import pairwise_iou
from yolodbg.groundtruth import Targets
from yolodbg.result import GtReason, LossResult, Positives

CONSERVATION_RTOL = 1e-5
CONSERVATION_ATOL = 1e-6

# thresholds of the negative-anchor hints
HINT_IOU = 0.5  # "overlaps a GT"
HINT_NO_OVERLAP = 0.1  # "overlaps no GT"
HINT_CONFIDENT = 0.5  # "confident"
HINT_SWAP_SCORE = 0.25


@dataclass(frozen=True)
class GtRow:
    row: int  # global GT row
    image_index: int
    gt_index: int  # index among its image's GTs
    ann_id: int | None
    cls: int
    category_id: int | None
    box_xyxy: tuple[float, float, float, float]  # input pixels
    num_pos: int
    num_zero_weight: int  # positives whose loss weight is 0
    mean_iou: float | None  # plain IoU of its positives' predicted boxes with it
    mean_align: float | None  # assigner metric of its positives
    terms: dict[str, float]
    total: float
    share: float  # total / batch total
    reason: GtReason | None
    flags: dict[str, int]  # e.g. dfl_clipped -> number of positives
    positives: list[dict]  # anchor description + iou, align, weight
    details: dict = field(default_factory=dict)  # recipe-specific extras (e.g. the one-to-one match)

    @property
    def size(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box_xyxy
        return (x2 - x1, y2 - y1)


@dataclass(frozen=True)
class ImageRow:
    index: int
    image_id: int | str | None
    terms: dict[str, float]
    total: float
    num_gt: int
    num_pos: int
    background: dict[str, float]


@dataclass(frozen=True)
class Negative:
    image_index: int
    anchor: dict  # level, stride, cell, slot
    pred_class: int
    score: float
    box_xyxy: tuple[float, float, float, float]
    best_iou: float
    best_gt: int | None  # global GT row of the best-overlapping GT
    terms: dict[str, float]
    contribution: float
    hint: str


@dataclass
class Breakdown:
    result: LossResult
    targets: Targets
    gts: list[GtRow]
    images: list[ImageRow]
    background: dict[str, float]
    background_by_level: list[dict]
    negatives: list[Negative]
    violations: list[str] = field(default_factory=list)
    focus: int | None = None  # the batch element the negatives were ranked in (None: the whole batch)

    @property
    def terms(self) -> dict[str, float]:
        return self.result.terms

    @property
    def total(self) -> float:
        return math.fsum(self.result.terms.values())

    @property
    def objective(self) -> float:
        return self.result.objective

    @property
    def num_pos(self) -> int:
        return int(self.result.positives.image.numel())


def _sum_by(index, values, size: int) -> torch.Tensor:
    out = torch.zeros(size, dtype=torch.float64)
    return out.scatter_add_(0, index, values)


def build(
    result: LossResult,
    targets: Targets,
    images: tuple[ImageInfo, ...] = (),
    top: int = 10,
    positives: bool = True,
    focus: int | None = None,
) -> Breakdown:
    """Reduce a recipe's ledger into the report; checks conservation (``violations``).

    ``positives=False`` leaves each GT row's ``positives`` list empty (its counts stay): a scan
    reads only the per-GT sums and does not need one dict per positive anchor. ``focus``: the
    ``top`` negatives are ranked within that batch element only (``explain --image``), not the batch.
    """
    m = len(targets)
    bs = result.batch_size
    term_names = [*result.terms, *result.extra_terms]  # logged terms, then extras such as o2m.box
    n = result.fg.shape[1]
    per_gt = {t: _sum_by(result.ledger[t].gt + 1, result.ledger[t].values, m + 1) for t in term_names}
    per_img = {t: _sum_by(result.ledger[t].image, result.ledger[t].values, bs) for t in term_names}
    bg = {  # background elements per (image, anchor), (B, N)
        t: result.ledger[t].on_grid(result.ledger[t].values * (result.ledger[t].gt < 0), bs, n)
        for t in term_names
    }
    bg_img = {t: bg[t].sum(1) for t in term_names}
    violations = _conservation(result, per_gt)
    total = math.fsum(result.terms.values())
    gts = _gt_rows(result, targets, per_gt, total, positives)
    pos = result.positives
    rows = []
    for i in range(bs):
        terms = {t: float(per_img[t][i]) for t in term_names}
        rows.append(
            ImageRow(
                index=i,
                image_id=images[i].image_id if i < len(images) else None,
                terms=terms,
                total=math.fsum(terms[t] for t in result.terms),
                num_gt=int((targets.batch_idx == i).sum()),
                num_pos=int((pos.image == i).sum()),
                background={t: float(bg_img[t][i]) for t in term_names},
            )
        )
    background = {t: float(per_gt[t][0]) for t in term_names}
    by_level = _background_by_level(result, bg)
    negatives = _negatives(result, targets, top, bg, focus)
    return Breakdown(result, targets, gts, rows, background, by_level, negatives, violations, focus)


def _conservation(result: LossResult, per_gt: dict[str, torch.Tensor]) -> list[str]:
    out = []
    expected = {**result.terms, **result.extra_terms}
    if set(result.ledger) != set(expected):
        out.append(f"ledger terms {sorted(result.ledger)} differ from the reported terms {sorted(expected)}")
    for t, value in expected.items():
        if t not in per_gt or not math.isfinite(value):
            continue
        parts = float(per_gt[t].sum())
        if abs(parts - value) > CONSERVATION_ATOL + CONSERVATION_RTOL * abs(value):
            out.append(
                f"term {t}: Σ per-GT + background = {parts:.9g} but the loss logs {value:.9g} "
                f"(difference {parts - value:.3g})"
            )
    return out


@dataclass(frozen=True)
class _PositiveStats:
    """Per GT row (lists of length M): counts and means over its positives, all GTs at once (float64 sums)."""

    num_pos: list[int]
    zero_weight: list[int]
    mean_iou: list[float | None]
    mean_align: list[float | None]
    flag_counts: dict[str, list[int]]


def _positive_stats(pos: Positives, m: int) -> _PositiveStats:
    gt = pos.gt

    def count(mask: torch.Tensor | None = None) -> list[int]:
        return torch.bincount(gt if mask is None else gt[mask], minlength=m).tolist() if m else []

    def mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> list[float | None]:
        idx, v = (gt, values) if mask is None else (gt[mask], values[mask])
        sums = torch.zeros(m, dtype=torch.float64).scatter_add_(0, idx, v.double()).tolist()
        ns = torch.bincount(idx, minlength=m).tolist() if m else []
        return [s / n if n else None for s, n in zip(sums, ns, strict=True)]

    return _PositiveStats(
        num_pos=count(),
        zero_weight=count(pos.weight == 0),
        mean_iou=mean(pos.iou),
        mean_align=mean(pos.align, torch.isfinite(pos.align)),
        flag_counts={name: count(flag.bool()) for name, flag in pos.flags.items()},
    )


class _PositiveDocs:
    """Each positive as a report entry (its anchor, IoU, alignment, weight and raised flags), by GT row;
    with ``detail`` off every GT lists none."""

    def __init__(self, pos: Positives, anchors: Anchors, detail: bool) -> None:
        self.anchors = anchors
        self.of_gt: dict[int, list[int]] = {}
        if detail:
            self.anchor_l, self.iou_l, self.align_l, self.weight_l = (
                v.tolist() for v in (pos.anchor, pos.iou, pos.align, pos.weight)
            )
            self.flags_l = {name: flag.tolist() for name, flag in pos.flags.items()}
            for p, g in enumerate(pos.gt.tolist()):
                self.of_gt.setdefault(g, []).append(p)

    def of(self, r: int) -> list[dict]:
        positives = []
        for p in self.of_gt.get(r, ()):
            d = self.anchors.describe(self.anchor_l[p])
            d.update(iou=round(self.iou_l[p], 6), align=_num(self.align_l[p]), weight=_num(self.weight_l[p]))
            for name, flag in self.flags_l.items():
                if flag[p]:
                    d[name] = True
            positives.append(d)
        return positives


def _gt_rows(
    result: LossResult, targets: Targets, per_gt: dict, total: float, detail: bool = True
) -> list[GtRow]:
    m = len(targets)
    boxes = targets.boxes_xyxy().tolist()
    local = targets.local_index().tolist()
    cls_of, image_of = targets.cls.long().tolist(), targets.batch_idx.long().tolist()
    names = [*result.terms, *result.extra_terms]
    per_gt_l = {t: per_gt[t].tolist() for t in names}
    st = _positive_stats(result.positives, m)
    docs = _PositiveDocs(result.positives, result.anchors, detail)
    rows = []
    for r in range(m):
        terms = {t: per_gt_l[t][r + 1] for t in names}
        gt_total = math.fsum(terms[t] for t in result.terms)
        positives = docs.of(r)
        cls = cls_of[r]
        cat = targets.category_ids[cls] if targets.category_ids and cls < len(targets.category_ids) else None
        rows.append(
            GtRow(
                row=r,
                image_index=image_of[r],
                gt_index=local[r],
                ann_id=targets.ann_ids[r] if targets.ann_ids else None,
                cls=cls,
                category_id=cat,
                box_xyxy=tuple(round(v, 4) for v in boxes[r]),
                num_pos=st.num_pos[r],
                num_zero_weight=st.zero_weight[r],
                mean_iou=st.mean_iou[r],
                mean_align=st.mean_align[r],
                terms=terms,
                total=gt_total,
                share=min(max(gt_total / total, 0.0), 1.0) if total > 0 else 0.0,
                reason=result.gt_reasons.get(r),
                flags={name: c[r] for name, c in st.flag_counts.items() if c[r]},
                positives=positives,
                details=result.gt_details.get(r, {}),
            )
        )
    return rows


def _num(x) -> float | None:
    v = float(x)
    return round(v, 9) if math.isfinite(v) else None


def _background_by_level(result: LossResult, bg: dict[str, torch.Tensor]) -> list[dict]:
    nl = len(result.anchors.strides)
    sums = {t: _sum_by(result.anchors.level, per_anchor.sum(0), nl) for t, per_anchor in bg.items()}
    return [
        {"level": lv, "stride": s, "terms": {t: float(sums[t][lv]) for t in bg}}
        for lv, s in enumerate(result.anchors.strides)
    ]


def _negatives(
    result: LossResult, targets: Targets, top: int, bg: dict[str, torch.Tensor], focus: int | None = None
) -> list[Negative]:
    n = result.fg.shape[1]
    if top <= 0:
        return []
    dense = {t: bg[t].reshape(-1) for t in result.terms}  # rank by what the framework logs
    totals = sum(dense.values())  # positives carry no background element in the logged terms
    if focus is not None:  # rank the focused image's own anchors: the others' elements do not compete
        mine = torch.zeros_like(totals, dtype=torch.bool)
        mine[focus * n : (focus + 1) * n] = True
        totals = torch.where(mine, totals, torch.zeros_like(totals))
    k = min(top, int((totals > 0).sum()))
    if k == 0:
        return []
    best = torch.topk(totals, k).indices
    b_t, a_t = best // n, best % n
    score_t, cls_t = result.pred_scores[b_t, a_t].max(-1)
    pbox_t = result.pred_boxes[b_t, a_t]
    boxes = targets.boxes_xyxy().to(torch.float32)
    best_iou_l: list[float] = [0.0] * k
    best_gt_l: list[int | None] = [None] * k
    if len(targets):  # each negative against the GTs of its own image (first best in row order)
        ious = pairwise_iou(pbox_t.float(), boxes)
        ious = ious.masked_fill(targets.batch_idx[None, :] != b_t[:, None], -math.inf)
        top_iou, top_gt = ious.max(-1)
        has = (targets.batch_idx[None, :] == b_t[:, None]).any(-1).tolist()
        for i, (v, j) in enumerate(zip(top_iou.tolist(), top_gt.tolist(), strict=True)):
            if has[i] and v > 0:  # an anchor that overlaps no GT has no best GT (not the image's first)
                best_iou_l[i], best_gt_l[i] = v, j
    term_l = {t: dense[t][best].tolist() for t in dense}
    total_l = totals[best].tolist()
    out = []
    for i, (b, a, score, pred_cls, pbox) in enumerate(
        zip(b_t.tolist(), a_t.tolist(), score_t.tolist(), cls_t.tolist(), pbox_t.tolist(), strict=True)
    ):
        best_iou, best_gt = best_iou_l[i], best_gt_l[i]
        hint = _hint(result, targets, b, a, score, pred_cls, best_iou, best_gt)
        out.append(
            Negative(
                image_index=b,
                anchor=result.anchors.describe(a),
                pred_class=pred_cls,
                score=score,
                box_xyxy=tuple(round(v, 2) for v in pbox),
                best_iou=best_iou,
                best_gt=best_gt,
                terms={t: term_l[t][i] for t in dense},
                contribution=total_l[i],
                hint=hint,
            )
        )
    return out


def _hint(
    result: LossResult,
    targets: Targets,
    b: int,
    a: int,
    score: float,
    pred_cls: int,
    best_iou: float,
    best_gt,
) -> str:
    """A short guess at why a background anchor costs loss (README, reading the report)."""
    if best_gt is not None and best_iou >= HINT_IOU:
        if pred_cls != int(targets.cls[best_gt]) and score >= HINT_SWAP_SCORE:
            return "class_swap?"
        pos = result.positives
        mine = pos.gt == best_gt
        if bool(mine.any()):
            anchors = result.anchors
            lv = anchors.level[a]
            same_level = anchors.level[pos.anchor[mine]] == lv
            near = (anchors.cell[pos.anchor[mine]] - anchors.cell[a]).abs().amax(-1) <= 1
            if bool((same_level & near).any()):
                return "duplicate"
        return "high_iou_negative"
    if best_iou < HINT_NO_OVERLAP:
        # a prediction centred inside an ignored box (crowd region) is not a missing label, whatever its score
        x1, y1, x2, y2 = (float(v) for v in result.pred_boxes[b, a])
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for ig in targets.ignored:
            gx1, gy1, gx2, gy2 = ig.box_xyxy
            if ig.image_index == b and gx1 <= cx <= gx2 and gy1 <= cy <= gy2:
                return f"{ig.reason}_region"
        if score >= HINT_CONFIDENT:
            return "missing_label?"
    return ""
