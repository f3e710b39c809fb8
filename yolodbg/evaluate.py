"""mAP beside the loss: decode a bundle as the framework's validator does, then COCOeval it.

Per bundle (:func:`evaluate_bundle`): the head output is decoded for inference and
post-processed with the framework's validation defaults (:class:`PostProcess`), boxes are
mapped back to original-image pixels through each image's :class:`~yolodbg.geometry.Letterbox`
and clipped to the image, and pycocotools' ``COCOeval.evaluate`` matches them with the ground
truth. What ``COCOeval.accumulate`` later reads (scores, matches and ignore flags per class,
area range and image) is kept in a slim form (:class:`BundleEval`), together with a
"detected" flag per GT (matched at IoU 0.5 by COCOeval, area "all", 100 detections).

Across bundles (:class:`yolodbg._cocopool.CocoAccumulator`): the slim records are laid out in
COCOeval's own order (class, area range, image id) and pycocotools' ``accumulate`` and
``summarize`` run on them, so the numbers equal one COCOeval over all images at once.
Decoding itself lives in :mod:`yolodbg._decode`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolodbg._cocopool import STAT_NAMES as STAT_NAMES
from yolodbg._cocopool import CocoAccumulator as CocoAccumulator
from yolodbg._cocopool import CocoSummary as CocoSummary
from yolodbg._cocopool import ImageMatches
from yolodbg._decode import (
    Detections,
    PostProcess,
    decode,
    original_boxes,
    original_size,
    postprocess_for,
    to_original,
)
from yolodbg.bundle import Bundle
from yolodbg.geometry import pairwise_iou
from yolodbg.groundtruth import Targets

MATCH_IOU = 0.5  # "detected": matched by COCOeval at this IoU (its first threshold)


@dataclass
class BundleEval:
    """One bundle's COCOeval matches, slim: what ``accumulate`` reads, keyed by image."""

    cat_ids: tuple[int, ...]  # category id of each class slot K, in COCOeval order
    class_of_cat: dict[int, int]  # category id -> class index
    images: dict[Any, ImageMatches]  # image key -> what COCOeval.accumulate reads of it
    detected: list[bool]  # per GT row: matched at IoU 0.5 (COCOeval, area all, maxDet 100)
    det_iou: list[float]  # per GT row: best IoU with a detection of its class (0 if none)
    num_dets: int
    notes: list[str] = field(default_factory=list)


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints progress


_GT_CACHE: dict[tuple[str, int, int], Any] = {}


def coco_gt(path: str | Path):
    """The pycocotools COCO object of a json, read once per process (keyed by path, size and mtime)."""
    from yolodbg.groundtruth import _load_coco

    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _GT_CACHE:
        _GT_CACHE.clear()
        coco = _load_coco(p)
        for ann in coco.dataset["annotations"]:  # COCOeval needs both; hand-made files may lack them
            ann.setdefault("iscrowd", 0)
            ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
        _GT_CACHE[key] = coco
    return _GT_CACHE[key]


def coco_image_ids(bundle: Bundle, coco) -> list[int]:
    """The json image id of every batch element, resolved as :func:`yolodbg.groundtruth.from_coco` does."""
    by_name: dict[str, int] = {}
    for img in coco.dataset.get("images", []):
        name = img.get("file_name")
        if name:
            by_name[name] = img["id"]
            by_name.setdefault(Path(name).stem, img["id"])
    out: list[int | None] = []
    for info in bundle.images:
        found = None
        for key in (info.image_id, info.file_name, Path(info.file_name).stem if info.file_name else None):
            if isinstance(key, int) and key in coco.imgs:
                found = key
            elif isinstance(key, str) and key in by_name:
                found = by_name[key]
            if found is not None:
                break
        out.append(found)
    return out


def _det_annotations(
    dets: list[Detections], img_ids: list[Any], cat_of_class: list[int | None]
) -> list[dict]:
    """COCO result entries, rounded as Ultralytics writes predictions.json (bbox 3 decimals, score 5)."""
    anns = []
    for d, img_id in zip(dets, img_ids, strict=True):
        if img_id is None or not len(d.scores):
            continue
        xyxy = d.boxes.float()
        wh = xyxy[:, 2:] - xyxy[:, :2]
        tl = (xyxy[:, :2] + xyxy[:, 2:]) / 2 - wh / 2  # centre then corner, as xyxy2xywh + shift
        for box, s, c in zip(
            torch.cat((tl, wh), 1).tolist(), d.scores.tolist(), d.labels.tolist(), strict=True
        ):
            cat = cat_of_class[c] if c < len(cat_of_class) else None
            if cat is None:
                continue
            bbox = [round(v, 3) for v in box]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat,
                    "bbox": bbox,
                    "score": round(s, 5),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    return anns


def _coco(dataset: dict):
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = dataset
    with _quiet():
        c.createIndex()
    return c


def _synthetic_gt(targets: Targets, nc: int) -> tuple[Any, list[int], list[int]]:
    """A COCO object of the Targets in original pixels (GT without a json): image ids 1..B, ann id row+1."""
    images, anns = [], []
    boxes = original_boxes(targets)
    for i in range(targets.batch_size):
        h, w = original_size(targets, i)
        images.append({"id": i + 1, "height": h, "width": w})
    for r, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        w, h = x2 - x1, y2 - y1
        anns.append(
            {
                "id": r + 1,
                "image_id": int(targets.batch_idx[r]) + 1,
                "category_id": int(targets.cls[r]),
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
        )
    cats = [{"id": c} for c in range(nc)]
    gt = _coco({"images": images, "annotations": anns, "categories": cats})
    return gt, [i + 1 for i in range(targets.batch_size)], list(range(nc))


def evaluate_bundle(
    bundle: Bundle,
    targets: Targets,
    dets: list[Detections],
    gt: str | Path | None,
    nc: int,
    bundle_key: Any = 0,
) -> BundleEval:
    """COCOeval one bundle's detections against its GT (the json when ``gt`` is one, else ``targets``).

    ``bundle_key`` makes image keys unique across bundles when the GT has no json image ids.
    """
    from pycocotools.cocoeval import COCOeval

    notes: list[str] = []
    json_gt = gt is not None and Path(gt).is_file()
    if json_gt:
        cgt = coco_gt(gt)
        img_ids = coco_image_ids(bundle, cgt)
        cat_ids = sorted(cgt.getCatIds())
        cat_of_class = list(targets.category_ids) if targets.category_ids else cat_ids
        keys = list(img_ids)
        ann_row = {a: r for r, a in enumerate(targets.ann_ids) if a is not None}
    else:
        cgt, img_ids, cat_ids = _synthetic_gt(targets, nc)
        cat_of_class = list(range(nc))
        keys = [(bundle_key, i) for i in img_ids]
        ann_row = {r + 1: r for r in range(len(targets))}
    anns = _det_annotations(dets, img_ids, cat_of_class)
    cdt = _coco(
        {
            "images": [cgt.imgs[i] for i in img_ids if i is not None],
            "annotations": anns,
            "categories": cgt.dataset.get("categories", []),
        }
    )
    ev = COCOeval(cgt, cdt, "bbox")
    ev.params.imgIds = [i for i in img_ids if i is not None]
    ev.params.catIds = cat_ids
    with _quiet():
        ev.evaluate()
    p = ev.params  # imgIds now sorted and unique
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    t50 = int(np.abs(np.asarray(p.iouThrs) - MATCH_IOU).argmin())
    key_of = {i: k for i, k in zip(img_ids, keys, strict=True) if i is not None}
    images: dict[Any, ImageMatches] = {}
    detected = [False] * len(targets)
    for j, img in enumerate(p.imgIds):
        per_class = {}
        for k in range(len(p.catIds)):
            entries = [ev.evalImgs[(k * n_area + a) * n_img + j] for a in range(n_area)]
            if entries[0] is None:
                continue
            per_class[k] = entries
            for g, m in zip(entries[0]["gtIds"], entries[0]["gtMatches"][t50], strict=True):
                if m > 0 and g in ann_row:
                    detected[ann_row[g]] = True
        images[key_of[img]] = ImageMatches.pack(per_class)
    if any(i is None for i in img_ids):
        notes.append(f"{bundle.source}: some images are not in the json; their detections are not evaluated")
    return BundleEval(
        cat_ids=tuple(cat_ids),
        class_of_cat={c: k for k, c in enumerate(cat_of_class) if c is not None},
        images=images,
        detected=detected,
        det_iou=best_iou_per_gt(targets, dets),
        num_dets=len(anns),
        notes=notes,
    )


def evaluate(ex, gt: str | Path | None, bundle_key: Any = 0, pp: PostProcess | None = None) -> BundleEval:
    """Decode an :class:`~yolodbg.explain.Explanation`'s bundle, map to original pixels, COCOeval it."""
    res = ex.breakdown.result
    parsed = None
    if ex.bundle.head == "ultralytics" and hasattr(ex.recipe, "parse"):
        parsed = ex.recipe.parse(ex.bundle)  # cached by the recipe: no second parse of the outputs
    dets = to_original(decode(ex.bundle, res, pp, parsed), ex.targets)
    be = evaluate_bundle(ex.bundle, ex.targets, dets, gt, int(res.pred_scores.shape[-1]), bundle_key)
    pp = pp or postprocess_for(ex.bundle)
    if not pp.exact:
        be.notes.append(f"{ex.bundle.head}: detections from the replay's decoded boxes; {pp.source}")
    return be


def best_iou_per_gt(targets: Targets, dets: list[Detections]) -> list[float]:
    """Per GT row: the largest IoU (original pixels) with a detection of the same class; 0 if none."""
    out = [0.0] * len(targets)
    if not len(targets):
        return out
    boxes = original_boxes(targets).float()
    for i, d in enumerate(dets):
        rows = (targets.batch_idx == i).nonzero().flatten()
        if not len(rows) or not len(d.scores):
            continue
        iou = pairwise_iou(boxes[rows], d.boxes.float())
        same = targets.cls[rows][:, None] == d.labels[None, :]
        best = torch.where(same, iou, torch.zeros_like(iou)).amax(1)
        for r, v in zip(rows.tolist(), best.tolist(), strict=True):
            out[r] = v
    return out
