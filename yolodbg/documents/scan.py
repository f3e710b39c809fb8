"""The ``yolodbg.scan/1`` document, from a :class:`~yolodbg.scan.aggregate.ScanAggregate`.

Loss sums are sums over bundles of each batch's logged loss and its per-GT shares; ``terms`` are
the mean per bundle (what a validation loop logs). See :mod:`yolodbg.scan.aggregate`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodbg.evaluate.coco import CocoSummary
    from yolodbg.scan.aggregate import Group, ScanAggregate
    from yolodbg.scan.records import GtRecord, ImageRecord

SCHEMA = "yolodbg.scan/1"


def scan_doc(agg: ScanAggregate, ceiling_hook: str) -> dict[str, Any]:
    """The ``yolodbg.scan/1`` document of everything ``agg`` added so far; ``ceiling_hook`` names the
    function that decided which GTs the assigner can reach (the recall ceiling)."""
    total = agg.total
    n = max(agg.bundles, 1)
    coco = agg.coco.summary() if agg.evaluated else None
    classes = _class_docs(agg, total, coco)
    sizes = _size_docs(agg, total, coco)
    levels = _level_docs(agg, total)
    a = agg.all
    bg_total = math.fsum(agg.background.values())
    return {
        "schema": SCHEMA,
        "recipe": agg.recipe,
        "interrupted": agg.interrupted,
        "bundles": agg.bundles,
        "images": agg.images,
        "failed": list(agg.failed),
        "letterbox": dict(agg.letterbox),
        "terms": {t: v / n for t, v in agg.terms.items()},
        "total": total / n,
        "objective": agg.objective / n,
        "loss_sum": {"terms": dict(agg.terms), "total": total},
        "num_gt": a.num_gt,
        "num_pos": a.num_pos,
        "pos_per_gt": a.num_pos / a.num_gt if a.num_gt else None,
        "background": {
            "terms": dict(agg.background),
            "loss": bg_total,
            "share": _ratio(bg_total, total),
        },
        "gt_loss": {"loss": a.loss, "share": _ratio(a.loss, total)},
        "recall_ceiling": {
            "value": (a.num_gt - a.unreachable) / a.num_gt if a.num_gt else None,
            "reachable": a.num_gt - a.unreachable,
            "num_gt": a.num_gt,
            "hook": ceiling_hook,
        },
        "orphans": _orphans_doc(agg),
        "detected_rate": a.detected / a.evaluated if a.evaluated else None,
        "classes": classes,
        "sizes": sizes,
        "levels": levels,
        "top_images": [_image_doc(im) for im in agg.top_images.items()],
        "top_gts": [g.row_doc() for g in agg.top_gts.items()],
        "missed_high_loss": [g.row_doc() for g in agg.top_missed.items()],
        "offenders": agg.offenders.items(),
        "coco": None
        if coco is None
        else {**coco.stats, "num_images": coco.num_images, "num_dets": coco.num_dets},
        "duplicates": list(agg.duplicates),
        "warnings": [f"{w} (×{k})" if k > 1 else w for w, k in agg.warnings.items()],
        "violations": list(agg.violations),
        "nonfinite": list(agg.nonfinite),
    }


def _class_docs(agg: ScanAggregate, total: float, coco: CocoSummary | None) -> list[dict[str, Any]]:
    """Per class: its loss (share of ``total``) and, when evaluated, its AP and AP50."""
    per_class_ap = coco.per_class if coco else {}
    classes = []
    for c in sorted(agg.classes):
        d = {"class": c, "category_id": agg.category_of.get(c), **group_doc(agg.classes[c], total)}
        d["AP"] = per_class_ap.get(c, {}).get("AP") if coco else None
        d["AP50"] = per_class_ap.get(c, {}).get("AP50") if coco else None
        classes.append(d)
    return classes


def _size_docs(agg: ScanAggregate, total: float, coco: CocoSummary | None) -> list[dict[str, Any]]:
    """Per COCO size bucket: its loss and, when evaluated, APs / APm / APl."""
    size_ap = {"small": "APs", "medium": "APm", "large": "APl"}
    return [
        {"bucket": b, **group_doc(g, total), "AP": coco.stats[size_ap[b]] if coco else None}
        for b, g in agg.buckets.items()
    ]


def _level_docs(agg: ScanAggregate, total: float) -> list[dict[str, Any]]:
    """Per pyramid level: foreground and background loss, their sum and its share."""
    levels = []
    for lv in sorted(agg.levels):
        d = dict(agg.levels[lv])
        d["loss"] = math.fsum(d["fg"].values()) + math.fsum(d["bg"].values())
        d["share"] = d["loss"] / total if total > 0 else None
        levels.append(d)
    return levels


def _orphans_doc(agg: ScanAggregate) -> dict[str, Any]:
    """GTs with no positive: how many, why, and the first few listed."""
    a = agg.all
    return {
        "count": a.orphans,
        "rate": a.orphans / a.num_gt if a.num_gt else None,
        "by_reason": dict(agg.reasons.most_common()),
        "listed": list(agg.orphans),
        "capped": a.orphans > len(agg.orphans),
    }


def group_doc(g: Group, total: float) -> dict[str, Any]:
    """Counts, loss and its share of ``total``, terms and detection rate of a set of GTs."""
    n = g.num_gt
    return {
        "num_gt": n,
        "num_pos": g.num_pos,
        "pos_per_gt": g.num_pos / n if n else None,
        "orphans": g.orphans,
        "zero_pos_rate": g.orphans / n if n else None,
        "unreachable": g.unreachable,
        "ceiling": (n - g.unreachable) / n if n else None,
        "loss": g.loss,
        "loss_per_gt": g.loss / n if n else None,
        "share": g.loss / total if total > 0 else None,
        "terms": dict(g.terms),
        "detected_rate": g.detected / g.evaluated if g.evaluated else None,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def orphan_doc(g: GtRecord) -> dict[str, Any]:
    """One listed orphan (``orphans.listed[]``): a GT with no positive, where it is and why."""
    x1, y1, x2, y2 = g.box_orig
    return {
        "bundle": g.bundle,
        "image": g.image,
        "row": g.row,
        "ann_id": g.ann_id,
        "class": g.cls,
        "size_orig": [round(x2 - x1, 2), round(y2 - y1, 2)],
        "bucket": g.bucket,
        "reason": g.reason,
        "reachable": g.reachable,
        "loss": g.total,
        "detected": g.detected,
    }


def _image_doc(im: ImageRecord) -> dict[str, Any]:
    """One of the costliest images (``top_images[]``)."""
    return {
        "bundle": im.bundle,
        "image": im.image,
        "index": im.index,
        "total": im.total,
        "terms": im.terms,
        "num_gt": im.num_gt,
        "num_pos": im.num_pos,
        "orphans": im.num_orphans,
        "missed": im.num_missed,
    }
