"""mAP beside the loss: decode a bundle as the framework's validator does, then COCOeval it.

Per bundle (:func:`evaluate_bundle`): the head output is decoded for inference and
post-processed with the framework's validation defaults (:class:`PostProcess`), boxes are
mapped back to original-image pixels through each image's :class:`~yolodbg.geometry.Letterbox`
and clipped to the image, and pycocotools' ``COCOeval.evaluate`` matches them with the ground
truth. What ``COCOeval.accumulate`` later reads (scores, matches and ignore flags per class,
area range and image) is kept in a slim form (:class:`BundleEval`), together with a
"detected" flag per GT (matched at IoU 0.5 by COCOeval, area "all", 100 detections).

Across bundles (:class:`yolodbg.evaluate.cocopool.CocoAccumulator`): the slim records are laid out in
COCOeval's own order (class, area range, image id) and pycocotools' ``accumulate`` and
``summarize`` run on them, so the numbers equal one COCOeval over all images at once.
Decoding itself lives in :mod:`yolodbg.evaluate.decode`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from yolodbg.evaluate.cocopool import STAT_NAMES as STAT_NAMES
from yolodbg.evaluate.cocopool import CocoAccumulator as CocoAccumulator
from yolodbg.evaluate.cocopool import CocoSummary as CocoSummary
from yolodbg.evaluate.cocopool import ImageMatches
from yolodbg.evaluate.decode import (
    Detections,
    PostProcess,
    decode,
    original_boxes,
    original_size,
    postprocess_for,
    to_original,
)
from yolodbg.geometry import pairwise_iou

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
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


def coco_gt(path: str | Path):
    """The pycocotools COCO object of a json, read once per process (see :func:`groundtruth.load_coco`)."""
    from yolodbg.groundtruth import load_coco

    return load_coco(path).coco


def coco_image_ids(bundle: Bundle, gt: str | Path) -> list[int | None]:
    """The json image id of every batch element, resolved as :func:`yolodbg.groundtruth.from_coco` does."""
    from yolodbg.groundtruth import load_coco

    cf = load_coco(gt)
    return [cf.find(info) for info in bundle.images]


def round_like_python(x: np.ndarray, ndigits: int) -> np.ndarray:
    """``round(v, ndigits)`` of every element (float64), as Python rounds: the nearest decimal, halves to even.

    ``np.round`` rounds the float product ``x · 10^n``; that differs from Python's exact decimal
    rounding only when the product lies within its rounding error (half an ulp, ~1e-16 relative)
    of a half. The elements within 1e-12 of one go through Python's ``round``.

    >>> round_like_python(np.array([0.1234567, 2.0625, 1.0005]), 3).tolist() == [round(v, 3) for v in (0.1234567, 2.0625, 1.0005)]
    True
    """
    x = np.asarray(x, np.float64)
    out = np.round(x, ndigits)
    scaled = x * 10.0**ndigits
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-12 * np.maximum(1.0, np.abs(scaled))
    for i in np.flatnonzero(near_half | ~np.isfinite(scaled)):
        out.flat[i] = round(float(x.flat[i]), ndigits) if np.isfinite(x.flat[i]) else x.flat[i]
    return out


@dataclass(frozen=True)
class _ImageDets:
    """One image's detections as Ultralytics writes predictions.json: xywh bbox (3 decimals), score (5)."""

    bbox: np.ndarray  # (D, 4) float64
    score: np.ndarray  # (D,) float64
    k: np.ndarray  # (D,) class slot (COCOeval category index)

    @property
    def area(self) -> np.ndarray:
        return self.bbox[:, 2] * self.bbox[:, 3]  # loadRes' area of a bbox result


def _image_dets(d: Detections, slot_of_class: np.ndarray, json_style: str = "ultralytics") -> _ImageDets:
    """The json entries the framework's evaluator writes; detections of classes without a category are dropped.

    ``"ultralytics"`` (and YOLOv5): xywh from the centre, bbox rounded to 3 decimals, score to 5.
    ``"yolox"``: ``w = x2 − x1`` from the corner, nothing rounded.
    """
    xyxy = d.boxes.float()
    wh = xyxy[:, 2:] - xyxy[:, :2]
    if json_style == "yolox":
        bbox = torch.cat((xyxy[:, :2], wh), 1).double().numpy().reshape(-1, 4)
        score = d.scores.float().double().numpy()
    else:
        tl = (xyxy[:, :2] + xyxy[:, 2:]) / 2 - wh / 2  # centre then corner, as xyxy2xywh + shift
        bbox = round_like_python(torch.cat((tl, wh), 1).double().numpy().reshape(-1, 4), 3)
        score = round_like_python(d.scores.double().numpy(), 5)
    labels = d.labels.numpy()
    known = labels < len(slot_of_class)
    k = np.full(len(labels), -1, np.int64)
    k[known] = slot_of_class[labels[known]]
    keep = k >= 0
    return _ImageDets(bbox[keep], score[keep], k[keep])


def _gts_of_image(cgt, img_id: Any, cat_ids: list[int]) -> dict[int, list[dict]]:
    """COCOeval's ``_gts`` of one image per category (its ``_prepare``: ignore = iscrowd), json order."""
    out: dict[int, list[dict]] = {}
    wanted = set(cat_ids)
    for ann in cgt.imgToAnns.get(img_id, []):
        if ann["category_id"] in wanted:
            g = dict(ann)
            g["ignore"] = "iscrowd" in g and g["iscrowd"]
            out.setdefault(g["category_id"], []).append(g)
    return out


def _image_matches(
    ev, img: Any, im: _ImageDets, gts: dict[int, list[dict]], cat_ids: list[int], slot: dict[int, int]
) -> tuple[ImageMatches, list[tuple[Any, bool]]]:
    """COCOeval.evaluate's entries of one image, and (GT id, matched at IoU 0.5) of each of its GTs.

    Per class, detections best first (a stable sort, as evaluateImg's mergesort), at most maxDet.
    A class without GT matches nothing: its detections are ignored by their area alone, set
    here for all classes at once. A class with GT goes through pycocotools' ``computeIoU`` and
    ``evaluateImg`` and overwrites its segment.
    """
    p = ev.params
    max_det, n_thr, n_area = p.maxDets[-1], len(p.iouThrs), len(p.areaRng)
    keep = _best_per_class(im, max_det)
    k_kept = im.k[keep]
    ks = sorted(set(np.unique(k_kept).tolist()) | {slot[c] for c in gts})
    d_off = np.searchsorted(k_kept, np.asarray(ks, np.int64))
    d_off = np.append(d_off, len(keep)).astype(np.int64)
    flags = np.zeros((2, n_area, n_thr, len(keep)), bool)  # matched, ignored
    area = im.area[keep]
    for a, (lo, hi) in enumerate(p.areaRng):
        flags[1, a] = (area < lo) | (area > hi)
    gt_ignore, g_counts, gt_matched = [], [], []
    for j, k in enumerate(ks):
        g = gts.get(cat_ids[k])
        g_counts.append(len(g) if g else 0)
        if not g:
            continue
        seg = slice(int(d_off[j]), int(d_off[j + 1]))
        ignore, matched = _class_matches(ev, img, cat_ids[k], im, keep, seg, g, flags)
        gt_ignore.append(ignore)
        gt_matched += matched
    matches = ImageMatches(
        tuple(ks),
        d_off,
        np.concatenate(([0], np.cumsum(g_counts))).astype(np.int64),
        im.score[keep],
        ImageMatches.pack(flags),
        np.concatenate(gt_ignore, 1) if gt_ignore else np.zeros((n_area, 0), bool),
    )
    return matches, gt_matched


def _best_per_class(im: _ImageDets, max_det: int) -> np.ndarray:
    """Indices of each class's first ``max_det`` detections, by class, best score first (ties in
    detection order, as evaluateImg's stable sort)."""
    order = np.lexsort((-im.score, im.k))
    k_sorted = im.k[order]
    rank = np.arange(len(order)) - np.searchsorted(k_sorted, k_sorted)
    return order[rank < max_det]


def _class_matches(
    ev, img: Any, cat: int, im: _ImageDets, keep: np.ndarray, seg: slice, g: list[dict], flags: np.ndarray
) -> tuple[np.ndarray, list[tuple[Any, bool]]]:
    """One class with GT in one image: fills its detections' segment ``seg`` of ``flags`` and returns
    its GTs' ignore flags per area range and (GT id, matched at IoU 0.5) of each.

    When no detection can reach any GT at the lowest threshold, evaluateImg would match nothing, so
    its GT entries are written directly; otherwise pycocotools' ``computeIoU`` and ``evaluateImg`` run.
    """
    p = ev.params
    max_det, n_thr = p.maxDets[-1], len(p.iouThrs)
    top = keep[seg]  # this class's first maxDet detections, best first (computeIoU's order)
    reach = _may_match(im.bbox[top], g, min(min(p.iouThrs), 1 - 1e-10))
    if not reach.any():  # evaluateImg would match nothing: its GT entries directly
        ignored = _gt_ignored(g, p.areaRng)
        # it lists its GTs non-ignored first (stable)
        return np.sort(ignored, 1), [
            (g[i]["id"], False) for i in np.argsort(ignored[0], kind="mergesort").tolist()
        ]
    near, at = top[reach], seg.start + np.flatnonzero(reach)
    ev._gts, ev._dts = {(img, cat): g}, {(img, cat): _det_dicts(im, near, img, cat)}
    ev.ious = {(img, cat): ev.computeIoU(img, cat)}
    entries = [ev.evaluateImg(img, cat, rng, max_det) for rng in p.areaRng]
    if list(entries[0]["dtScores"]) != im.score[near].tolist():
        raise AssertionError(f"image {img}, category {cat}: detection order differs from COCOeval's")
    for a, e in enumerate(entries):
        flags[0, a, :, at] = np.asarray(e["dtMatches"]).reshape(n_thr, -1).T > 0
        flags[1, a, :, at] = np.asarray(e["dtIgnore"]).reshape(n_thr, -1).T > 0
    gt_ignore = np.stack([np.asarray(e["gtIgnore"], bool).reshape(-1) for e in entries])
    t50 = int(np.abs(np.asarray(p.iouThrs) - MATCH_IOU).argmin())
    matched_50 = entries[0]["gtMatches"][t50]
    return gt_ignore, [(gid, bool(m > 0)) for gid, m in zip(entries[0]["gtIds"], matched_50, strict=True)]


def _gt_ignored(gts: list[dict], area_ranges: list) -> np.ndarray:
    """``(A, G)`` bool: evaluateImg's ``_ignore`` of each GT per area range (crowd, or area outside)."""
    crowd = np.array([bool(g["ignore"]) for g in gts])
    area = np.array([g["area"] for g in gts], np.float64)
    return np.stack([crowd | (area < lo) | (area > hi) for lo, hi in area_ranges])


def _may_match(boxes: np.ndarray, gts: list[dict], lowest: float) -> np.ndarray:
    """``(D,)`` bool: the detection reaches IoU ``lowest`` with some GT (crowd or not), as computeIoU measures it.

    evaluateImg matches a detection only to a GT with IoU ≥ the threshold (it skips ``iou < t``),
    and a detection that matches nothing leaves the others' matches as they were; so the
    detections below the lowest threshold with every GT can skip its per-threshold loops: they
    end unmatched, ignored when their area is outside the range — what the caller presets.
    """
    from pycocotools import mask as mask_utils

    if len(boxes) == 0:
        return np.zeros(0, bool)
    ious = mask_utils.iou(
        np.ascontiguousarray(boxes, np.float64),
        np.asarray([g["bbox"] for g in gts], np.float64).reshape(-1, 4),
        [int(g["iscrowd"]) for g in gts],
    )
    return ~(np.asarray(ious).reshape(len(boxes), len(gts)) < lowest).all(1)


def _det_dicts(dets: _ImageDets, sel: np.ndarray, img_id: Any, cat: int) -> list[dict]:
    """Detection entries of one (image, category) as loadRes makes them (what COCOeval reads)."""
    return [
        {
            "id": int(i) + 1,
            "image_id": img_id,
            "category_id": cat,
            "bbox": b,
            "score": s,
            "area": a,
            "iscrowd": 0,
        }
        for i, b, s, a in zip(
            sel.tolist(),
            dets.bbox[sel].tolist(),
            dets.score[sel].tolist(),
            dets.area[sel].tolist(),
            strict=True,
        )
    ]


def _synthetic_gt(targets: Targets, nc: int) -> tuple[Any, list[int], list[int]]:
    """A COCO object of the Targets in original pixels (GT without a json): image ids 1..B, ann id row+1."""
    from pycocotools.coco import COCO

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
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(nc)]}
    with _quiet():
        gt.createIndex()
    return gt, [i + 1 for i in range(targets.batch_size)], list(range(nc))


def evaluate_bundle(
    bundle: Bundle,
    targets: Targets,
    dets: list[Detections],
    gt: str | Path | None,
    nc: int,
    bundle_key: Any = 0,
    json_style: str = "ultralytics",
) -> BundleEval:
    """COCOeval one bundle's detections against its GT (the json when ``gt`` is one, else ``targets``).

    ``json_style``: how the framework writes detections into its json (:func:`_image_dets`).

    Exactly ``COCOeval.evaluate`` (bbox, default parameters) on these images: every (image,
    category) with a GT goes through pycocotools' own ``computeIoU`` and ``evaluateImg``; one with
    detections only cannot match anything, so its entry (scores best first, ignore flags from
    the detection areas alone) is filled in directly — most of the 80 classes of an image, and
    most of the time. ``bundle_key`` makes image keys unique across bundles when the GT has no
    json image ids.
    """
    from pycocotools.cocoeval import COCOeval

    side = _gt_side(bundle, targets, gt, nc, bundle_key)
    img_ids, cat_ids, ann_row = side.img_ids, side.cat_ids, side.ann_row
    slot = {c: k for k, c in enumerate(cat_ids)}
    slot_of_class = np.asarray(
        [slot.get(c, -1) if c is not None else -1 for c in side.cat_of_class], np.int64
    )
    ev = COCOeval(iouType="bbox")
    ev.params.catIds = cat_ids
    dets_of = _dets_by_image(dets, img_ids, slot_of_class, json_style)
    key_of = {i: k for i, k in zip(img_ids, side.keys, strict=True) if i is not None}
    images: dict[Any, ImageMatches] = {}
    detected = [False] * len(targets)
    num_dets = 0
    for img in sorted(dets_of):
        im = dets_of[img]
        num_dets += len(im.score)
        matches, gt_matched = _image_matches(
            ev, img, im, _gts_of_image(side.cgt, img, cat_ids), cat_ids, slot
        )
        images[key_of[img]] = matches
        for gid, m in gt_matched:
            if m and gid in ann_row:
                detected[ann_row[gid]] = True
    notes: list[str] = []
    if any(i is None for i in img_ids):
        notes.append(f"{bundle.source}: some images are not in the json; their detections are not evaluated")
    return BundleEval(
        cat_ids=tuple(cat_ids),
        class_of_cat={c: k for k, c in enumerate(side.cat_of_class) if c is not None},
        images=images,
        detected=detected,
        det_iou=best_iou_per_gt(targets, dets),
        num_dets=num_dets,
        notes=notes,
    )


class _GtSide(NamedTuple):
    """The ground truth COCOeval sees for one bundle, and how the bundle's images and GTs map onto it."""

    cgt: Any  # pycocotools COCO
    img_ids: list[Any]  # COCO image id per batch element (None: not in the json)
    cat_ids: list[int]  # COCO categories evaluated
    cat_of_class: list[int | None]  # COCO category of each class index
    keys: list[Any]  # key of each image in BundleEval.images (unique across bundles)
    ann_row: dict[Any, int]  # COCO annotation id -> GT row of the targets


def _gt_side(bundle: Bundle, targets: Targets, gt: str | Path | None, nc: int, bundle_key: Any) -> _GtSide:
    """The json when ``gt`` is one (its image ids, categories, annotation ids), else a synthetic COCO
    built from ``targets`` whose image keys carry ``bundle_key``."""
    if gt is not None and Path(gt).is_file():
        cgt = coco_gt(gt)
        img_ids = coco_image_ids(bundle, gt)
        cat_ids = sorted(cgt.getCatIds())
        cat_of_class = list(targets.category_ids) if targets.category_ids else cat_ids
        ann_row = {a: r for r, a in enumerate(targets.ann_ids) if a is not None}
        return _GtSide(cgt, img_ids, cat_ids, cat_of_class, list(img_ids), ann_row)
    cgt, img_ids, cat_ids = _synthetic_gt(targets, nc)
    keys = [(bundle_key, i) for i in img_ids]
    return _GtSide(cgt, img_ids, cat_ids, list(range(nc)), keys, {r + 1: r for r in range(len(targets))})


def _dets_by_image(
    dets: list[Detections], img_ids: list[Any], slot_of_class: np.ndarray, json_style: str
) -> dict[Any, _ImageDets]:
    """Each evaluated image's detections; an image twice in the batch: COCOeval sees the detections of both."""
    parts_of: dict[Any, list[_ImageDets]] = {}
    for d, img_id in zip(dets, img_ids, strict=True):
        if img_id is not None:
            parts_of.setdefault(img_id, []).append(_image_dets(d, slot_of_class, json_style))
    return {
        img: parts[0]
        if len(parts) == 1
        else _ImageDets(*(np.concatenate(f) for f in zip(*map(_fields, parts), strict=True)))
        for img, parts in parts_of.items()
    }


def _fields(d: _ImageDets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return d.bbox, d.score, d.k


def evaluate(ex, gt: str | Path | None, bundle_key: Any = 0, pp: PostProcess | None = None) -> BundleEval:
    """Decode an :class:`~yolodbg.explain.Explanation`'s bundle, map to original pixels, COCOeval it."""
    res = ex.breakdown.result
    parsed = None
    if ex.bundle.family.decode_reads_parsed:
        parsed = ex.recipe.parse(ex.bundle)  # cached by the recipe: no second parse of the outputs
    pp = pp or postprocess_for(ex.bundle)
    dets = decode(ex.bundle, res, pp, parsed, ex.recipe)
    dets = to_original(dets, ex.targets, clip=pp.json != "yolox")
    be = evaluate_bundle(
        ex.bundle, ex.targets, dets, gt, int(res.pred_scores.shape[-1]), bundle_key, json_style=pp.json
    )
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
