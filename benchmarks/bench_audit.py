"""``yolodbg audit`` against cleanlab's object-detection label-issue scores, on known injected errors.

    python benchmarks/bench_audit.py [--seed 0] [--noise 0.05] [--images 320] [--workers 1]
    python benchmarks/bench_audit.py --seed 0,1,2 --noise 0.05,0.15      # a sweep, with a summary

Needs the benchmark extras (``pip install 'yolodbg[bench]'``: Ultralytics 8.4.190 to read the committed
model, cleanlab 2.9, scikit-learn). What it does:

1. **Data** (first run only, about a minute; reused from ``--cache``, default ``benchmarks/.cache/audit``):
   ``benchmarks/audit_set/make_audit_set.py`` draws 320 validation images of the synthetic shape scenes
   (a seed the training set never used), writes their clean COCO labels ``val_clean.json`` and bundles of 16
   images with the train-mode head outputs of the committed YOLOv8n (``benchmarks/audit_set/model.pt``,
   trained by that script; the benchmark never trains).
2. **Noise**: with ``--seed``, a fraction ``--noise`` of the clean boxes gets each error type, every box at
   most one: ``class_swap`` (another of the 4 classes), ``bad_box`` (shifted and/or rescaled so that its IoU
   with the true box is in [0.2, 0.6]), ``dropped`` (removed), and as many ``spurious`` boxes (random class
   and size on background: IoU < 0.1 with every true box) are added. Written to
   ``val_noisy_seed{S}_noise{R}.json`` and ``injected_seed{S}_noise{R}.json`` in the cache's ``runs/``.
3. **The two tools on the same predictions**: ``yolodbg audit BUNDLES --gt NOISY --json`` (as a separate
   process; ``--audit-root`` picks the checkout whose ``yolodbg`` runs), and cleanlab's
   ``object_detection.rank`` on the detections of the same bundles, decoded and NMS-ed by yolodbg's
   validator-exact Ultralytics decode (conf 0.001, IoU 0.7, at most 300 per image), mapped to original
   pixels: ``get_label_quality_scores`` per image, ``compute_swap_box_scores``,
   ``compute_badloc_box_scores`` (per label box) and ``compute_overlooked_box_scores`` (per predicted box),
   all with cleanlab's defaults. Lower cleanlab score = more suspect; ranked here by 1 - score. Beside it,
   cleanlab "tuned": per row, the best of its probability thresholds (``HIGH_GRID`` x ``LOW_GRID``) chosen
   with the injected errors, an upper bound (its default 0.95 is above nearly every YOLO class score).
4. **Metrics**: image level, AP and AUROC of the image scores, positive = the image has any injected
   error. Per type, the AP of the box ranking: ``class_swap`` by audit's ``wrong_class`` issues vs cleanlab's
   swap score, ``bad_box`` by ``bad_box`` vs badloc, ``spurious`` by ``spurious_label`` (cleanlab has no
   such score: its badloc ranking is shown for reference), each over every box of the noisy labels (a box
   audit does not flag ranks last); ``dropped`` by ``missing_label`` vs the overlooked score, over the
   suspect boxes each tool proposes, a suspect being right when it matches a dropped box of its image at
   IoU >= 0.5 (each dropped box once, best score first) and AP taken over all dropped boxes (a dropped box
   no suspect finds costs recall). Then the times: decode + cleanlab, ``audit``, and ``yolodbg scan`` on the
   same bundles (the issue's cost bound: audit <= 1.2x scan).

The last line reads ``audit vs cleanlab: image AP ours X.XXX cleanlab Y.YYY; AUROC ours X.XXX cleanlab
Y.YYY`` (in a sweep: the means over the runs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks" / "audit_set"))

import make_audit_set  # noqa: E402

DEFAULT_CACHE = REPO / "benchmarks" / ".cache" / "audit"
ERROR_TYPES = ("class_swap", "bad_box", "dropped", "spurious")
OURS_TYPE = {
    "class_swap": "wrong_class",
    "bad_box": "bad_box",
    "dropped": "missing_label",
    "spurious": "spurious_label",
}
CLEANLAB_SCORE = {"class_swap": "swap", "bad_box": "badloc", "dropped": "overlooked", "spurious": "badloc"}
BAD_BOX_IOU = (0.2, 0.6)
SPURIOUS_MAX_IOU = 0.1
MATCH_IOU = 0.5


# ------------------------------------------------------------------------------------------ geometry


def xywh_to_xyxy(b) -> np.ndarray:
    x, y, w, h = b
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) xyxy boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# ---------------------------------------------------------------------------------------- injection


def perturb_box(rng: np.random.Generator, box: np.ndarray, w: int, h: int) -> np.ndarray | None:
    """A shifted and/or rescaled copy of ``box`` inside the image with IoU in BAD_BOX_IOU (None if none found)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    for _ in range(200):
        cx, cy, nw, nh = (x0 + x1) / 2, (y0 + y1) / 2, bw, bh
        mode = rng.integers(3)  # 0 shift, 1 rescale, 2 both
        if mode in (0, 2):
            cx += rng.choice((-1, 1)) * rng.uniform(0.15, 0.6) * bw * (rng.random() < 0.8)
            cy += rng.choice((-1, 1)) * rng.uniform(0.15, 0.6) * bh * (rng.random() < 0.8)
        if mode in (1, 2):
            for_w = rng.uniform(0.4, 0.8) if rng.random() < 0.5 else rng.uniform(1.3, 2.2)
            for_h = for_w * rng.uniform(0.85, 1.15) if rng.random() < 0.6 else rng.uniform(0.6, 1.7)
            nw, nh = bw * for_w, bh * for_h
        new = np.array([max(cx - nw / 2, 0), max(cy - nh / 2, 0), min(cx + nw / 2, w), min(cy + nh / 2, h)])
        new = np.round(new, 1)
        if new[2] - new[0] < 3 or new[3] - new[1] < 3:
            continue
        iou = iou_matrix(new[None], box[None])[0, 0]
        if BAD_BOX_IOU[0] <= iou <= BAD_BOX_IOU[1]:
            return new
    return None


def spurious_box(rng: np.random.Generator, w: int, h: int, taken: np.ndarray) -> np.ndarray | None:
    """A random box on background: IoU < SPURIOUS_MAX_IOU with every box in ``taken``."""
    for _ in range(200):
        size = math.exp(rng.uniform(math.log(8), math.log(70)))
        aspect = rng.uniform(0.75, 1.33)
        bw, bh = min(size * math.sqrt(aspect), w - 1), min(size / math.sqrt(aspect), h - 1)
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        new = np.round(np.array([x0, y0, x0 + bw, y0 + bh]), 1)
        if not len(taken) or iou_matrix(new[None], taken).max() < SPURIOUS_MAX_IOU:
            return new
    return None


def inject(clean: dict, rate: float, seed: int) -> tuple[dict, list[dict]]:
    """The noisy COCO document and the injected errors (format of the audit interface)."""
    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in clean["images"]}
    anns = [dict(a) for a in clean["annotations"] if not a.get("iscrowd", 0)]
    cat_ids = [c["id"] for c in clean["categories"]]
    count = round(rate * len(anns))
    order = rng.permutation(len(anns))
    injected: list[dict] = []
    dropped_ids: set[int] = set()
    # disjoint picks: swaps, then bad boxes (a box that admits no perturbation is passed over), then drops
    cursor = 0
    for a in (anns[i] for i in order[cursor : cursor + count]):
        a["category_id"] = int(rng.choice([c for c in cat_ids if c != a["category_id"]]))
        injected.append(
            {"type": "class_swap", "image_id": a["image_id"], "ann_id": a["id"], "bbox": a["bbox"]}
        )
    cursor += count
    bad = 0
    while bad < count and cursor < len(order):
        a = anns[order[cursor]]
        cursor += 1
        im = images[a["image_id"]]
        new = perturb_box(rng, xywh_to_xyxy(a["bbox"]), im["width"], im["height"])
        if new is None:
            continue
        a["bbox"] = [float(new[0]), float(new[1]), float(new[2] - new[0]), float(new[3] - new[1])]
        a["area"] = a["bbox"][2] * a["bbox"][3]
        a["segmentation"] = [[new[0], new[1], new[2], new[1], new[2], new[3], new[0], new[3]]]
        injected.append({"type": "bad_box", "image_id": a["image_id"], "ann_id": a["id"], "bbox": a["bbox"]})
        bad += 1
    for a in (anns[i] for i in order[cursor : cursor + count]):
        dropped_ids.add(a["id"])
        injected.append({"type": "dropped", "image_id": a["image_id"], "ann_id": a["id"], "bbox": a["bbox"]})
    kept = [a for a in anns if a["id"] not in dropped_ids]
    true_boxes: dict[int, list] = {}
    for a in clean["annotations"]:
        true_boxes.setdefault(a["image_id"], []).append(xywh_to_xyxy(a["bbox"]))
    next_id = max((a["id"] for a in clean["annotations"]), default=0) + 1
    image_ids = sorted(images)
    added = 0
    while added < count:
        im = images[int(rng.choice(image_ids))]
        taken = np.array(true_boxes.get(im["id"], []), dtype=np.float64).reshape(-1, 4)
        new = spurious_box(rng, im["width"], im["height"], taken)
        if new is None:
            continue
        bbox = [float(new[0]), float(new[1]), float(new[2] - new[0]), float(new[3] - new[1])]
        kept.append(
            {
                "id": next_id,
                "image_id": im["id"],
                "category_id": int(rng.choice(cat_ids)),
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
                "segmentation": [[new[0], new[1], new[2], new[1], new[2], new[3], new[0], new[3]]],
            }
        )
        true_boxes.setdefault(im["id"], []).append(new)
        injected.append({"type": "spurious", "image_id": im["id"], "ann_id": next_id, "bbox": bbox})
        next_id += 1
        added += 1
    kept.sort(key=lambda a: (a["image_id"], a["id"]))
    noisy = {**clean, "annotations": kept}
    noisy["info"] = {
        "description": f"audit benchmark labels with injected errors (seed {seed}, noise {rate})"
    }
    return noisy, injected


def subset(coco: dict, image_ids: set[int]) -> dict:
    """The COCO document restricted to ``image_ids``."""
    return {
        **coco,
        "images": [im for im in coco["images"] if im["id"] in image_ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids],
    }


# ------------------------------------------------------------------------------------- predictions


@dataclass
class ImageDetections:
    image_id: int
    boxes: np.ndarray  # (D, 4) xyxy, original pixels
    scores: np.ndarray  # (D,)
    labels: np.ndarray  # (D,) class index 0..K-1


def detections(bundle_paths: list[Path]) -> list[ImageDetections]:
    """Per image, the validator's detections of each bundle (yolodbg's exact Ultralytics decode + NMS),
    mapped to original-image pixels and clipped to the image."""
    import torch

    from yolodbg import bundle as bundle_io
    from yolodbg.evaluate.decode import decode

    out = []
    for path in bundle_paths:
        b = bundle_io.load(path)
        for info, det in zip(b.images, decode(b, None), strict=True):
            boxes = info.letterbox.to_original_boxes(det.boxes.float())
            h, w = info.orig_size
            boxes = torch.stack(
                (
                    boxes[:, 0].clamp(0, w),
                    boxes[:, 1].clamp(0, h),
                    boxes[:, 2].clamp(0, w),
                    boxes[:, 3].clamp(0, h),
                ),
                1,
            )
            out.append(
                ImageDetections(
                    int(info.image_id),
                    boxes.numpy().astype(np.float64),
                    det.scores.numpy(),
                    det.labels.numpy(),
                )
            )
    return out


def bundle_image_ids(path: Path) -> list[int]:
    from yolodbg import bundle as bundle_io

    return [int(info.image_id) for info in bundle_io.load(path).images]


# ---------------------------------------------------------------------------------------- cleanlab


def cleanlab_inputs(
    coco: dict, dets: list[ImageDetections]
) -> tuple[list[dict], list[list[np.ndarray]], list]:
    """cleanlab's labels (xyxy + class index per image), predictions (per class (M, 5) xyxy + score) and,
    per image, the annotation ids in label order."""
    cat_index = {c["id"]: k for k, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    nc = len(cat_index)
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a)
    labels, predictions, ann_ids = [], [], []
    for d in dets:
        anns = by_image.get(d.image_id, [])
        labels.append(
            {
                "bboxes": np.array([xywh_to_xyxy(a["bbox"]) for a in anns], dtype=np.float64).reshape(-1, 4),
                "labels": np.array([cat_index[a["category_id"]] for a in anns], dtype=np.int64),
            }
        )
        ann_ids.append([a["id"] for a in anns])
        per_class = []
        for k in range(nc):
            sel = d.labels == k
            per_class.append(
                np.concatenate((d.boxes[sel], d.scores[sel, None]), 1).astype(np.float64).reshape(-1, 5)
            )
        predictions.append(per_class)
    return labels, predictions, ann_ids


HIGH_GRID = (0.95, 0.8, 0.6, 0.4, 0.25, 0.1)  # cleanlab's high_probability_threshold (default 0.95 first)
LOW_GRID = (0.5, 0.25, 0.1)  # its low_probability_threshold (default 0.5 first)


def run_cleanlab(labels: list[dict], predictions: list) -> dict:
    """cleanlab's image scores and its three box scores with its defaults; and the same at every
    threshold of HIGH_GRID x LOW_GRID (for the tuned reference).

    The box scores of all settings share one set of per-image inputs (IoU and distance matrices), as
    cleanlab's image score does internally and as its ``auxiliary_inputs`` argument is meant for; the
    image score of a setting is cleanlab's own recipe (``pool_box_scores_per_image`` of each box score,
    combined with its default weights), checked against ``get_label_quality_scores`` at the defaults."""
    from cleanlab.internal import constants
    from cleanlab.object_detection import rank

    t0 = time.perf_counter()
    image = np.asarray(rank.get_label_quality_scores(labels, predictions, verbose=False))
    image_seconds = time.perf_counter() - t0
    aux = rank._get_valid_inputs_for_compute_scores(constants.ALPHA, labels, predictions)
    swap = {
        h: rank.compute_swap_box_scores(
            labels=labels, predictions=predictions, auxiliary_inputs=aux, high_probability_threshold=h
        )
        for h in HIGH_GRID
    }
    overlooked = {
        h: rank.compute_overlooked_box_scores(
            labels=labels, predictions=predictions, auxiliary_inputs=aux, high_probability_threshold=h
        )
        for h in HIGH_GRID
    }
    badloc = {
        lo: rank.compute_badloc_box_scores(
            labels=labels, predictions=predictions, auxiliary_inputs=aux, low_probability_threshold=lo
        )
        for lo in LOW_GRID
    }
    weights = {
        "overlooked": constants.CUSTOM_SCORE_WEIGHT_OVERLOOKED,
        "swap": constants.CUSTOM_SCORE_WEIGHT_SWAP,
        "badloc": constants.CUSTOM_SCORE_WEIGHT_BADLOC,
    }

    def image_score(h: float, lo: float) -> np.ndarray:
        pooled = {
            "overlooked": rank.pool_box_scores_per_image(overlooked[h]),
            "swap": rank.pool_box_scores_per_image(swap[h]),
            "badloc": rank.pool_box_scores_per_image(badloc[lo]),
        }
        return np.exp(sum(w * np.log(constants.TINY_VALUE + pooled[k]) for k, w in weights.items()))

    images = {(h, lo): image_score(h, lo) for h in HIGH_GRID for lo in LOW_GRID}
    default = (HIGH_GRID[0], LOW_GRID[0])
    if not np.allclose(images[default], image, atol=1e-9):
        raise SystemExit("cleanlab's image score recipe changed: the tuned reference would not be cleanlab's")
    return {
        "image": image,
        "image_seconds": image_seconds,
        "swap": swap[default[0]],
        "badloc": badloc[default[1]],
        "overlooked": overlooked[default[0]],
        "grid": {"swap": swap, "overlooked": overlooked, "badloc": badloc, "image": images},
        "nc": len(predictions[0]) if predictions else 0,
    }


def cleanlab_tuned(cl: dict, ann_ids, dets, injected, image_ids) -> dict:
    """The best cleanlab can do here: per type and for the image ranking, the best AP (and AUROC) over
    the threshold grid, chosen with the injected errors themselves (an upper bound, not a usable setting)."""
    grid = cl["grid"]
    types: dict[str, float] = {}
    settings: dict[str, float] = {}
    for kind in ERROR_TYPES:
        name = CLEANLAB_SCORE[kind]
        for threshold, scores in grid[name].items():
            ap = type_aps_cleanlab({**cl, name: scores}, ann_ids, dets, injected, only=kind)[kind]
            if kind not in types or ap > types[kind]:
                types[kind], settings[kind] = ap, threshold
    best = {"ap": -1.0, "auroc": -1.0}
    for setting, scores in grid["image"].items():
        ap, auroc = image_metrics(image_ids, 1.0 - scores, injected)
        if ap > best["ap"]:
            best["ap"], best["ap_setting"] = ap, setting
        if auroc > best["auroc"]:
            best["auroc"], best["auroc_setting"] = auroc, setting
    return {**best, "types": types, "type_settings": settings}


# ------------------------------------------------------------------------------------------ metrics


def ranked_ap(scores: np.ndarray, positive: np.ndarray, n_positive: int) -> float:
    """AP of a ranking: the sum over score thresholds of precision x recall gained, recall over
    ``n_positive`` (positives never ranked cost recall); tied scores count as one threshold."""
    if n_positive == 0:
        return float("nan")
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    tp, fp = np.cumsum(positive), np.cumsum(~positive)
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1] if len(scores) else np.array([], int)
    ap, prev_recall = 0.0, 0.0
    for i in last:
        recall = tp[i] / n_positive
        ap += (recall - prev_recall) * tp[i] / (tp[i] + fp[i])
        prev_recall = recall
    return float(ap)


def match_suspects(suspects: list[tuple[float, int, np.ndarray]], dropped: list[dict]) -> np.ndarray:
    """Per suspect (score, image_id, xyxy), best first: whether it matches a still unmatched dropped box
    of its image at IoU >= MATCH_IOU. Returns the flags in the suspects' order."""
    by_image: dict[int, list] = {}
    for d in dropped:
        by_image.setdefault(d["image_id"], []).append(xywh_to_xyxy(d["bbox"]))
    used = {k: np.zeros(len(v), dtype=bool) for k, v in by_image.items()}
    flags = np.zeros(len(suspects), dtype=bool)
    for i in sorted(range(len(suspects)), key=lambda i: -suspects[i][0]):
        _, image_id, box = suspects[i]
        if image_id not in by_image:
            continue
        iou = iou_matrix(box[None], np.array(by_image[image_id]))[0]
        iou[used[image_id]] = 0
        if iou.size and iou.max() >= MATCH_IOU:
            used[image_id][int(iou.argmax())] = True
            flags[i] = True
    return flags


def type_aps_ours(doc: dict, noisy: dict, injected: list[dict], any_type: bool = False) -> dict[str, float]:
    """Per injected type, the AP of audit's ranking of that type's issues (``any_type``: of its issues
    of any type on a labelled box, a diagnostic of errors found under another name)."""
    ann_ids = [a["id"] for a in noisy["annotations"]]
    out = {}
    for kind in ERROR_TYPES:
        truth = [e for e in injected if e["type"] == kind]
        wanted = OURS_TYPE[kind]
        issues = [
            i
            for i in doc["issues"]
            if i["type"] == wanted or (any_type and kind != "dropped" and i["type"] != "missing_label")
        ]
        if kind == "dropped":
            suspects = [(i["score"], i["image_id"], xywh_to_xyxy(i["bbox"])) for i in issues]
            flags = match_suspects(suspects, truth)
            out[kind] = ranked_ap(np.array([s[0] for s in suspects]), flags, len(truth))
            continue
        score: dict[int, float] = {}
        for i in issues:
            if i.get("ann_id") is not None:
                score[i["ann_id"]] = max(score.get(i["ann_id"], 0.0), float(i["score"]))
        bad = {e["ann_id"] for e in truth}
        out[kind] = ranked_ap(
            np.array([score.get(a, 0.0) for a in ann_ids]), np.array([a in bad for a in ann_ids]), len(bad)
        )
    return out


def type_aps_cleanlab(
    cl: dict, ann_ids: list[list[int]], dets: list[ImageDetections], injected, only: str | None = None
) -> dict:
    """Per injected type (or the type ``only``), the AP of cleanlab's matching box score (ranked by 1 - score)."""
    out = {}
    flat_ids = [a for ids in ann_ids for a in ids]
    for kind in ERROR_TYPES if only is None else (only,):
        truth = [e for e in injected if e["type"] == kind]
        scores = cl[CLEANLAB_SCORE[kind]]
        if kind == "dropped":
            suspects = []
            for d, s in zip(dets, scores, strict=True):
                # cleanlab's predictions are per class: its per-box scores follow the class order
                order = np.concatenate([np.flatnonzero(d.labels == k) for k in range(cl["nc"])])
                for j, v in zip(order, s, strict=True):
                    if not np.isnan(v):
                        suspects.append((1.0 - float(v), d.image_id, d.boxes[j]))
            flags = match_suspects(suspects, truth)
            out[kind] = ranked_ap(np.array([x[0] for x in suspects]), flags, len(truth))
            continue
        flat = np.concatenate([np.asarray(s, dtype=np.float64) for s in scores]) if scores else np.zeros(0)
        bad = {e["ann_id"] for e in truth}
        out[kind] = ranked_ap(1.0 - flat, np.array([a in bad for a in flat_ids]), len(bad))
    return out


def image_metrics(image_ids: list[int], scores: np.ndarray, injected: list[dict]) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    dirty = {e["image_id"] for e in injected}
    y = np.array([i in dirty for i in image_ids])
    return float(average_precision_score(y, scores)), float(roc_auc_score(y, scores))


# ------------------------------------------------------------------------------------ the two tools


def yolodbg_cli(
    root: Path, args: list[str], code: str | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python -m yolodbg ARGS`` (or ``python -c CODE ARGS``) with ``root`` first on the path;
    (wall seconds, process)."""
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "yolodbg", *args]
    t0 = time.perf_counter()
    # from inside ``root``: ``-m`` and ``-c`` put the working directory first on the path
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
    return time.perf_counter() - t0, proc


def checkout_state(root: Path) -> str:
    """The commit of ``root`` (``+dirty`` with uncommitted changes under yolodbg/), or '' outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "yolodbg"], capture_output=True, text=True
        )
    except OSError:
        return ""
    if head.returncode:
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def audit_available(root: Path) -> bool:
    return (root / "yolodbg" / "audit").is_dir() or (root / "yolodbg" / "audit.py").is_file()


def run_audit(root: Path, bundles: list[Path], gt: Path, out: Path, workers: int) -> tuple[float, dict]:
    """``yolodbg audit BUNDLES --gt GT --json OUT``: its time and its document."""
    cli_args = ["audit", *map(str, bundles), "--gt", str(gt), "--json", str(out), "--workers", str(workers)]
    seconds, proc = yolodbg_cli(root, cli_args)
    if (
        proc.returncode == 2 and "No such command 'audit'" in proc.stderr
    ):  # the library entry, before the command
        code = (
            "import json, sys; from yolodbg.audit import audit; "
            "doc = audit(sys.argv[3:], sys.argv[1], workers=int(sys.argv[2])); "
            f"open({str(out)!r}, 'w').write(json.dumps(doc))"
        )
        seconds, proc = yolodbg_cli(root, [str(gt), str(workers), *map(str, bundles)], code=code)
    if proc.returncode not in (0, 1) or not out.is_file():
        raise SystemExit(f"yolodbg audit failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads(out.read_text())


def run_scan(root: Path, bundles: list[Path], gt: Path, out: Path, workers: int) -> float:
    seconds, proc = yolodbg_cli(
        root, ["scan", *map(str, bundles), "--gt", str(gt), "--json", str(out), "--workers", str(workers)]
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"yolodbg scan failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


# ---------------------------------------------------------------------------------------------- main


def timing(args, bundles: list[Path], gt: Path, audit: bool) -> None:
    """``yolodbg scan`` and ``yolodbg audit`` on the same bundles and labels, ``--rounds`` times
    interleaved (this machine's speed drifts by minutes): the best time of each and their ratio."""
    runs = args.cache / "runs"
    scan_times, audit_times = [], []
    for _ in range(args.rounds):
        scan_times.append(run_scan(args.audit_root, bundles, gt, runs / "scan_timing.json", args.workers))
        if audit:
            audit_times.append(
                run_audit(args.audit_root, bundles, gt, runs / "audit_timing.json", args.workers)[0]
            )
    line = f"\ntimes on {len(bundles)} bundles, {args.workers} worker(s), best of {args.rounds}: scan {min(scan_times):.1f} s"
    if audit:
        ratio = min(audit_times) / min(scan_times)
        line += f"; audit {min(audit_times):.1f} s = {ratio:.2f}x scan (target <= 1.2x)"
    print(line)


def fmt(x: float | None) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def run_one(args, ctx: dict, seed: int, rate: float) -> dict:
    """One noisy label set: inject, run both tools, print the table; return the numbers."""
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    tag = f"seed{seed}_noise{rate:g}"
    noisy, injected = inject(ctx["clean"], rate, seed)
    noisy_path, injected_path = runs / f"val_noisy_{tag}.json", runs / f"injected_{tag}.json"
    noisy_path.write_text(json.dumps(noisy) + "\n")
    injected_path.write_text(json.dumps(injected, indent=1) + "\n")
    image_ids = [d.image_id for d in ctx["dets"]]
    dirty = {e["image_id"] for e in injected}
    n_boxes = sum(1 for a in ctx["clean"]["annotations"] if not a.get("iscrowd", 0))
    counts = {k: sum(e["type"] == k for e in injected) for k in ERROR_TYPES}
    print(
        f"\n== seed {seed}, noise {rate:g} per type: {len(image_ids)} images, {n_boxes} clean boxes; "
        + ", ".join(f"{counts[k]} {k}" for k in ERROR_TYPES)
        + f"; {len(dirty)} images ({100 * len(dirty) / len(image_ids):.0f}%) have an error"
    )

    t0 = time.perf_counter()
    labels, predictions, ann_ids = cleanlab_inputs(noisy, ctx["dets"])
    cl = run_cleanlab(labels, predictions)
    cleanlab_seconds = time.perf_counter() - t0
    cl_ap, cl_auroc = image_metrics(image_ids, 1.0 - cl["image"], injected)
    cl_types = type_aps_cleanlab(cl, ann_ids, ctx["dets"], injected)
    tuned = cleanlab_tuned(cl, ann_ids, ctx["dets"], injected, image_ids)

    ours = None
    if ctx["audit"]:
        audit_seconds, doc = run_audit(
            args.audit_root, ctx["bundles"], noisy_path, runs / f"audit_{tag}.json", args.workers
        )
        score = {im["image_id"]: float(im["score"]) for im in doc["images"]}
        our_ap, our_auroc = image_metrics(
            image_ids, np.array([score.get(i, 0.0) for i in image_ids]), injected
        )
        ours = {
            "ap": our_ap,
            "auroc": our_auroc,
            "types": type_aps_ours(doc, noisy, injected),
            "any_type": type_aps_ours(doc, noisy, injected, any_type=True),
            "seconds": audit_seconds,
            "checkout": checkout_state(args.audit_root),
            "issues": {
                t: sum(i["type"] == t for i in doc["issues"])
                for t in sorted({i["type"] for i in doc["issues"]})
            },
        }
    label_count = np.array([len(x["labels"]) for x in labels], dtype=np.float64)
    base_ap, base_auroc = image_metrics(image_ids, label_count, injected)

    head = (
        f"{'':12} {'injected':>8}  {'ours AP':>7}  {'cleanlab AP':>11}  {'tuned*':>6}  {'ours, any type':>14}"
    )
    print(head + "  cleanlab score")
    for kind in ERROR_TYPES:
        note = " (no spurious score: reference)" if kind == "spurious" else ""
        any_type = fmt(ours["any_type"][kind]) if ours and kind != "dropped" else ""
        setting = tuned["type_settings"][kind]
        print(
            f"{kind:12} {counts[kind]:8d}  {fmt(ours['types'][kind] if ours else None):>7}  "
            f"{fmt(cl_types[kind]):>11}  {fmt(tuned['types'][kind]):>6}  {any_type:>14}  "
            f"{CLEANLAB_SCORE[kind]}{note}; tuned at threshold {setting:g}"
        )
    print(
        f"{'image AP':12} {len(dirty):8d}  {fmt(ours['ap'] if ours else None):>7}  {fmt(cl_ap):>11}  "
        f"{fmt(tuned['ap']):>6}  {'':14}  1 - get_label_quality_scores (baseline, more labels first: {base_ap:.3f})"
    )
    print(
        f"{'image AUROC':12} {'':8}  {fmt(ours['auroc'] if ours else None):>7}  {fmt(cl_auroc):>11}  "
        f"{fmt(tuned['auroc']):>6}  {'':14}  (baseline: {base_auroc:.3f})"
    )
    print(
        "* tuned: cleanlab at the best of its thresholds for each row (high "
        f"{'/'.join(map(str, HIGH_GRID))}, low {'/'.join(map(str, LOW_GRID))}), chosen with the injected "
        "errors: an upper bound"
    )
    if ours:
        issues = ", ".join(f"{n} {t}" for t, n in ours["issues"].items())
        print(f"audit ({args.audit_root} at {ours['checkout'] or '?'}) issues: {issues}")
    times = (
        f"times: cleanlab {cleanlab_seconds:.1f} s (image scores {cl['image_seconds']:.1f} s; "
        f"+ decode/NMS {ctx['decode_seconds']:.1f} s)"
    )
    if ours:
        times += f"; audit {ours['seconds']:.1f} s"
    print(times)
    return {
        "seed": seed,
        "noise": rate,
        "ours": ours,
        "baseline": {"ap": base_ap, "auroc": base_auroc},
        "cleanlab": {"ap": cl_ap, "auroc": cl_auroc, "types": cl_types, "seconds": cleanlab_seconds},
        "cleanlab_tuned": {k: v for k, v in tuned.items() if not k.endswith("setting")},
    }


def summary(results: list[dict]) -> None:
    """One row per run: image AP/AUROC and the per-type APs of both tools."""
    print("\n== summary (ours / cleanlab / cleanlab tuned*)")
    head = f"{'seed':>4} {'noise':>5}  {'image AP':>17}  {'AUROC':>17}  " + "  ".join(
        f"{k:>17}" for k in ERROR_TYPES
    )
    print(head)
    for r in results:
        o, c = r["ours"], r["cleanlab"]
        t = r["cleanlab_tuned"]
        trio = lambda a, b, c: f"{fmt(a)}/{fmt(b)}/{fmt(c)}"  # noqa: E731
        cells = [trio(o["types"][k] if o else None, c["types"][k], t["types"][k]) for k in ERROR_TYPES]
        print(
            f"{r['seed']:>4} {r['noise']:>5g}  {trio(o['ap'] if o else None, c['ap'], t['ap'])}  "
            f"{trio(o['auroc'] if o else None, c['auroc'], t['auroc'])}  " + "  ".join(cells)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", default="0", help="noise seed, or a comma list for a sweep (default 0)")
    parser.add_argument("--noise", default="0.05", help="fraction of boxes per error type, or a comma list")
    parser.add_argument(
        "--images",
        type=int,
        default=make_audit_set.VAL_IMAGES,
        help="validation images used "
        f"(rounded up to whole bundles of {make_audit_set.BUNDLE_IMAGES}; default all)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="images, labels, bundles, runs")
    parser.add_argument(
        "--model", type=Path, default=make_audit_set.MODEL_PATH, help="weights (fp16 state dict)"
    )
    parser.add_argument(
        "--audit-root", type=Path, default=REPO, help="checkout whose yolodbg runs audit and scan"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes of audit and scan (default 1)"
    )
    parser.add_argument("--no-scan", action="store_true", help="skip timing `yolodbg scan` against audit")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved scan/audit timings (best of)")
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    args = parser.parse_args()
    args.cache, args.audit_root, args.model = (p.resolve() for p in (args.cache, args.audit_root, args.model))
    seeds = [int(s) for s in args.seed.split(",")]
    rates = [float(r) for r in args.noise.split(",")]

    t0 = time.perf_counter()
    make_audit_set.build_cache(args.cache, args.model)
    print(f"data: {args.cache} ready in {time.perf_counter() - t0:.1f} s")
    all_bundles = sorted((args.cache / "bundles").glob("*.pt"))
    n_bundles = min(len(all_bundles), max(1, math.ceil(args.images / make_audit_set.BUNDLE_IMAGES)))
    bundles = all_bundles[:n_bundles]
    t0 = time.perf_counter()
    dets = detections(bundles)
    decode_seconds = time.perf_counter() - t0
    image_ids = {d.image_id for d in dets}
    clean = subset(json.loads((args.cache / "val_clean.json").read_text()), image_ids)
    audit = audit_available(args.audit_root)
    if not audit:
        print(
            f"yolodbg audit: not found under {args.audit_root} (no yolodbg/audit): only cleanlab runs; "
            "pass --audit-root CHECKOUT to compare"
        )
    ctx = {"clean": clean, "dets": dets, "bundles": bundles, "decode_seconds": decode_seconds, "audit": audit}
    results = [run_one(args, ctx, seed, rate) for rate in rates for seed in seeds]

    if not args.no_scan:
        timing(args, bundles, args.cache / "runs" / f"val_noisy_seed{seeds[0]}_noise{rates[0]:g}.json", audit)
    if len(results) > 1:
        summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    cl_ap, cl_auroc = (
        mean([r["cleanlab"]["ap"] for r in results]),
        mean([r["cleanlab"]["auroc"] for r in results]),
    )
    if audit:
        ap, auroc = mean([r["ours"]["ap"] for r in results]), mean([r["ours"]["auroc"] for r in results])
        print(
            f"audit vs cleanlab: image AP ours {ap:.3f} cleanlab {cl_ap:.3f}; AUROC ours {auroc:.3f} cleanlab {cl_auroc:.3f}"
        )
    else:
        print(
            f"audit vs cleanlab: image AP ours n/a cleanlab {cl_ap:.3f}; AUROC ours n/a cleanlab {cl_auroc:.3f}"
        )


if __name__ == "__main__":
    main()
