"""The ``yolodbg.explain/1`` document (docs/json.md; its schema is yolodbg/schemas/explain-1.json)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from yolodbg.documents.common import versions

if TYPE_CHECKING:
    from yolodbg.breakdown import GtRow, ImageRow, Negative
    from yolodbg.bundle import ImageInfo
    from yolodbg.class_names import ClassNames
    from yolodbg.explain import Explanation

SCHEMA = "yolodbg.explain/1"


def _f(x: float | None) -> float | None:
    if x is None:
        return None
    return x if math.isfinite(x) else None


def _input_doc(ex: Explanation) -> dict[str, Any]:
    """Where the numbers came from: the bundle, its head, the ground truth and its letterbox."""
    b = ex.bundle
    return {
        "bundle": b.source,
        "digest": b.digest,
        "head": b.head,
        "ground_truth": ex.targets.source,
        "input_size": list(ex.targets.input_size),
        "letterbox": ex.targets.letterbox_doc(),
    }


def _image_doc(im: ImageRow, images_info: dict[int, ImageInfo]) -> dict[str, Any]:
    """One image's share of the loss (``images[]``)."""
    return {
        "index": im.index,
        "image_id": im.image_id,
        "file_name": images_info[im.index].file_name if im.index in images_info else None,
        "terms": im.terms,
        "total": im.total,
        "num_gt": im.num_gt,
        "num_pos": im.num_pos,
        "background": {"terms": im.background},
    }


def _gt_doc(g: GtRow, names: ClassNames) -> dict[str, Any]:
    """One GT row (``gts[]``): its positives, its terms and, when it has none, the reason."""
    return {
        "image_index": g.image_index,
        "gt_index": g.gt_index,
        "row": g.row,
        "ann_id": g.ann_id,
        "class": g.cls,
        "category_id": g.category_id,
        "class_name": names.name_of(g.cls),
        "box_xyxy": list(g.box_xyxy),
        "num_pos": g.num_pos,
        "num_zero_weight": g.num_zero_weight,
        "mean_iou": _f(g.mean_iou),
        "mean_align": _f(g.mean_align),
        "terms": g.terms,
        "total": g.total,
        "share": g.share,
        "reason": None
        if g.reason is None
        else {"code": g.reason.code, "detail": g.reason.detail, "other_gt": g.reason.other_gt},
        "flags": g.flags,
        "details": g.details,
        "positives": g.positives,
    }


def _negative_doc(n: Negative, local: list[int], names: ClassNames) -> dict[str, Any]:
    """One costly background anchor (``negatives[]``); ``local``: each target row's index in its image."""
    return {
        "image_index": n.image_index,
        **n.anchor,
        "pred_class": n.pred_class,
        "class_name": names.name_of(n.pred_class),
        "score": n.score,
        "box_xyxy": list(n.box_xyxy),
        "best_iou": n.best_iou,
        "best_gt": n.best_gt,
        "best_gt_index": None if n.best_gt is None else local[n.best_gt],
        "terms": n.terms,
        "contribution": n.contribution,
        "hint": n.hint,
    }


def explain_doc(ex: Explanation, focus_image: int | None = None) -> dict[str, Any]:
    """The explain document; it always holds every GT and image of the batch. With ``focus_image`` (recorded)
    its ``negatives`` are that image\'s own costliest background anchors, as the explanation ranked them."""
    bd, res, rec, b = ex.breakdown, ex.breakdown.result, ex.recipe, ex.bundle
    images_info = {i.index: i for i in b.images}
    local = ex.targets.local_index().tolist()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "recipe": {"name": rec.name, "spec": rec.spec(), "params": res.params, "reproduces": rec.reproduces},
        "objective": res.objective,
        "terms": dict(res.terms),
        "extra_terms": dict(res.extra_terms),
        "total": bd.total,
        "batch_size": res.batch_size,
        "num_gt": len(ex.targets),
        "num_pos": bd.num_pos,
        "normalizers": res.normalizers,
        "notes": res.notes,
        "logged": None if ex.logged is None else ex.logged.doc(),
        "input": _input_doc(ex),
        "images": [_image_doc(im, images_info) for im in bd.images],
        "gts": [_gt_doc(g, ex.class_names) for g in bd.gts],
        "background": {"terms": bd.background, "by_level": bd.background_by_level},
        "negatives": [_negative_doc(n, local, ex.class_names) for n in bd.negatives],
        "ignored": [
            {
                "image_index": i.image_index,
                "ann_id": i.ann_id,
                "box_xyxy": list(i.box_xyxy),
                "reason": i.reason,
            }
            for i in ex.targets.ignored
        ],
        "warnings": list(res.warnings) + list(bd.violations),
        "versions": versions(),
    }
    if focus_image is not None:
        doc["focus_image"] = focus_image
    if ex.nonfinite is not None:
        doc["nonfinite"] = ex.nonfinite.to_json()
    return doc
