"""``yolodbg scan``: the loss of a whole dataset, one bundle at a time.

Map: every bundle goes through :func:`yolodbg.explain.explain` (and, with evaluation on,
:func:`yolodbg.evaluate.coco.evaluate_bundle`) and is reduced at once into a small :class:`BundleRecord`:
one :class:`GtRecord` per GT, one row per image, per-level sums, the background offenders
that look like missing labels, and COCOeval's slim match records. Reduce: a
:class:`~yolodbg.scan.aggregate.ScanAggregate` adds records up; bundles are never kept.
:mod:`yolodbg.scan.run` drives it over files, in this process or in ``--workers`` processes.

Sizes are COCO's buckets of the GT box area in ORIGINAL-image pixels (the Targets'
letterboxes map input pixels back; without a letterbox, input pixels are used):
small < 32², medium < 96², large otherwise.

Recall ceiling: whether a GT can receive any positive at all under the recipe's geometric
rules, whatever the predictions — an upper bound on recall that no training fixes, in the
spirit of YOLOv5's best possible recall. The recipe answers (``Recipe.reachable``, named by
``Recipe.recall_ceiling``):

- TAL recipes (``yolov8``, ``yolo26``): some anchor centre lies inside the box after the
  small-box floor (and the box is not taken for padding) — the assigner's step A;
- every other recipe (the base class's default): a GT is unreachable when it has no positive and
  its reason code is geometric (``recipes.base.GEOMETRIC_CODES``: no anchor inside, padding row,
  not counted, no anchor shape within ``anchor_t`` (YOLOv5's BPR), cell held by another GT (YOLOv1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from yolodbg.breakdown import Breakdown
from yolodbg.explain import Explanation
from yolodbg.result import LossResult

SIZE_BUCKETS: tuple[tuple[str, float], ...] = (("small", 32.0**2), ("medium", 96.0**2), ("large", math.inf))
MISSING_LABEL_HINT = "missing_label?"


def size_bucket(area: float) -> str:
    """COCO's size bucket of an area in original-image pixels².

    >>> size_bucket(31.9 ** 2), size_bucket(32.0 ** 2), size_bucket(96.0 ** 2)
    ('small', 'medium', 'large')
    """
    return next(name for name, upper in SIZE_BUCKETS if area < upper)


@dataclass(frozen=True)
class GtRecord:
    """One GT as the scan keeps it; also one line of ``--rows`` (:meth:`row_doc`)."""

    bundle: str
    image: str  # image label (COCO id, file name, or bundle#index)
    image_index: int
    row: int
    gt_index: int
    ann_id: int | None
    cls: int
    category_id: int | None
    box_orig: tuple[float, float, float, float]  # xyxy, original-image pixels
    area_orig: float
    bucket: str
    num_pos: int
    pos_by_stride: dict[str, int]
    reachable: bool
    reason: str | None
    reason_detail: str | None
    terms: dict[str, float]
    total: float
    share: float  # of its batch's total
    detected: bool | None  # matched by COCOeval at IoU 0.5 (None without evaluation)
    det_iou: float | None  # best IoU with a detection of its class

    def row_doc(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "image": self.image,
            "image_index": self.image_index,
            "row": self.row,
            "gt_index": self.gt_index,
            "ann_id": self.ann_id,
            "class": self.cls,
            "category_id": self.category_id,
            "box_orig_xyxy": [round(v, 3) for v in self.box_orig],
            "area_orig": round(self.area_orig, 3),
            "bucket": self.bucket,
            "num_pos": self.num_pos,
            "pos_by_stride": self.pos_by_stride,
            "reachable": self.reachable,
            "reason": self.reason,
            "reason_detail": self.reason_detail,
            "terms": self.terms,
            "total": self.total,
            "share": self.share,
            "detected": self.detected,
            "det_iou": None if self.det_iou is None else round(self.det_iou, 6),
        }


@dataclass(frozen=True)
class ImageRecord:
    bundle: str
    image: str
    index: int
    terms: dict[str, float]
    total: float
    num_gt: int
    num_pos: int
    num_orphans: int
    num_missed: int | None


@dataclass
class BundleRecord:
    """Everything the scan keeps of one bundle (small: no tensors of the size of the outputs)."""

    source: str
    recipe: str
    batch_size: int
    terms: dict[str, float]
    objective: float
    num_pos: int
    background: dict[str, float]
    levels: list[dict[str, Any]]  # level, stride, num_pos, fg {term: value}, bg {term: value}
    gts: list[GtRecord]
    images: list[ImageRecord]
    offenders: list[dict[str, Any]]  # background anchors hinted "missing_label?"
    warnings: list[str]
    violations: list[str]
    epoch: float | None = None
    coco: Any = None  # yolodbg.evaluate.coco.BundleEval
    nonfinite: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # what must agree between bundles: see model_of
    recall_ceiling: str = "reason_reachable"  # the recipe's reach rule (Recipe.recall_ceiling)


def model_of(ex: Explanation) -> dict[str, Any]:
    """What makes two bundles the output of one model, for a scan that adds them up: the head, the
    number of classes, the strides of the levels and the category ids (when the bundle records them)."""
    res = ex.breakdown.result
    cats = ex.bundle.category_ids
    return {
        "head": ex.bundle.head,
        "classes": int(res.pred_scores.shape[-1]),
        "strides": tuple(float(s) for s in res.anchors.strides),
        "category_ids": tuple(cats) if cats is not None else None,
    }


def image_label(ex: Explanation, i: int) -> str:
    info = ex.bundle.images[i] if i < len(ex.bundle.images) else None
    if info is not None and (info.image_id is not None or info.file_name):
        return info.label
    return f"{Path(ex.bundle.source).name}#{i}"


def _levels(bd: Breakdown) -> list[dict[str, Any]]:
    """Per level: positives, and each logged term split into foreground and background (the breakdown's)."""
    result = bd.result
    anchors = result.anchors
    nl = len(anchors.strides)
    pos_level = anchors.level[result.positives.anchor]
    n_pos = torch.bincount(pos_level, minlength=nl).tolist()
    fg: dict[str, list[float]] = {}
    for t in result.terms:
        led = result.ledger[t]
        mine = led.gt >= 0
        lv = anchors.level[led.anchor[mine]]
        fg[t] = torch.zeros(nl, dtype=torch.float64).scatter_add_(0, lv, led.values[mine]).tolist()
    return [
        {
            "level": i,
            "stride": float(s),
            "num_pos": n_pos[i],
            "fg": {t: fg[t][i] for t in result.terms},
            "bg": {t: bd.background_by_level[i]["terms"][t] for t in result.terms},
        }
        for i, s in enumerate(anchors.strides)
    ]


def record_of(ex: Explanation, coco: Any = None) -> BundleRecord:
    """Reduce an explanation (and its optional COCO evaluation) into a :class:`BundleRecord`."""
    bd, res, targets = ex.breakdown, ex.breakdown.result, ex.targets
    src = ex.bundle.source
    num_pos = torch.tensor([g.num_pos for g in bd.gts], dtype=torch.long)
    can = ex.recipe.reachable(res, targets, num_pos)
    labels = [image_label(ex, i) for i in range(res.batch_size)]
    gts = _gt_records(ex, labels, can, coco)
    images = _image_records(ex, labels, gts, coco)
    return BundleRecord(
        source=src,
        recipe=ex.recipe.spec(),
        batch_size=res.batch_size,
        terms=dict(res.terms),
        objective=res.objective,
        num_pos=bd.num_pos,
        background={t: bd.background[t] for t in res.terms},
        levels=_levels(bd),
        gts=gts,
        images=images,
        offenders=_offenders(ex, labels),
        warnings=list(res.warnings) + (list(coco.notes) if coco is not None else []),
        violations=list(bd.violations),
        epoch=_epoch(ex.bundle.meta),
        coco=coco,
        nonfinite=ex.nonfinite.message if ex.nonfinite is not None else None,
        model=model_of(ex),
        extra={"letterbox": ex.targets.letterbox_doc()},
        recall_ceiling=ex.recipe.recall_ceiling,
    )


def _gt_records(ex: Explanation, labels: list[str], can: torch.Tensor, coco: Any) -> list[GtRecord]:
    """One :class:`GtRecord` per GT: its box and size bucket in the original image, positives per
    stride, whether the assigner could reach it (``can``), its loss and, with ``coco``, its match."""
    from yolodbg.evaluate.decode import original_boxes

    bd, res = ex.breakdown, ex.breakdown.result
    anchors = res.anchors
    per_level = _positives_per_gt_level(res, len(ex.targets))
    boxes = original_boxes(ex.targets).tolist()
    nl = len(anchors.strides)
    gts = []
    for g in bd.gts:
        x1, y1, x2, y2 = boxes[g.row]
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        counts = per_level[g.row * nl : (g.row + 1) * nl].tolist() if per_level is not None else []
        gts.append(
            GtRecord(
                bundle=ex.bundle.source,
                image=labels[g.image_index],
                image_index=g.image_index,
                row=g.row,
                gt_index=g.gt_index,
                ann_id=g.ann_id,
                cls=g.cls,
                category_id=g.category_id,
                box_orig=(x1, y1, x2, y2),
                area_orig=area,
                bucket=size_bucket(area),
                num_pos=g.num_pos,
                pos_by_stride={f"{s:g}": c for s, c in zip(anchors.strides, counts, strict=True) if c},
                reachable=bool(can[g.row]),
                reason=g.reason.code if g.reason else None,
                reason_detail=g.reason.detail if g.reason else None,
                terms=dict(g.terms),
                total=g.total,
                share=g.share,
                detected=None if coco is None else coco.detected[g.row],
                det_iou=None if coco is None else coco.det_iou[g.row],
            )
        )
    return gts


def _positives_per_gt_level(res: LossResult, m: int) -> torch.Tensor | None:
    """Positives of each GT row on each level, flat ``(row * levels + level)`` (None without GTs)."""
    nl = len(res.anchors.strides)
    pos = res.positives
    return torch.bincount(pos.gt * nl + res.anchors.level[pos.anchor], minlength=m * nl) if m else None


def _image_records(ex: Explanation, labels: list[str], gts: list[GtRecord], coco: Any) -> list[ImageRecord]:
    """One :class:`ImageRecord` per image: its loss, GTs, positives, orphans and (with ``coco``) misses."""
    res = ex.breakdown.result
    images = []
    for im in ex.breakdown.images:
        mine = [g for g in gts if g.image_index == im.index]
        images.append(
            ImageRecord(
                bundle=ex.bundle.source,
                image=labels[im.index],
                index=im.index,
                terms={t: im.terms[t] for t in res.terms},
                total=im.total,
                num_gt=im.num_gt,
                num_pos=im.num_pos,
                num_orphans=sum(g.num_pos == 0 for g in mine),
                num_missed=None if coco is None else sum(not g.detected for g in mine),
            )
        )
    return images


def _epoch(meta: dict[str, Any]) -> float | None:
    value = meta.get("epoch")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _offenders(ex: Explanation, labels: list[str]) -> list[dict[str, Any]]:
    """Background anchors the breakdown hints as missing labels, with their box in original pixels."""
    out = []
    for n in ex.breakdown.negatives:
        if n.hint != MISSING_LABEL_HINT:
            continue
        lb = ex.targets.letterboxes[n.image_index] if n.image_index < len(ex.targets.letterboxes) else None
        box = lb.to_original_xyxy(n.box_xyxy) if lb is not None else n.box_xyxy
        out.append(
            {
                "bundle": ex.bundle.source,
                "image": labels[n.image_index],
                "image_index": n.image_index,
                "stride": n.anchor.get("stride"),
                "cell": n.anchor.get("cell"),
                "pred_class": n.pred_class,
                "score": n.score,
                "box_orig_xyxy": [round(float(v), 2) for v in box],
                "contribution": n.contribution,
            }
        )
    return out
