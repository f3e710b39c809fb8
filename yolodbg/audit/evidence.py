"""The map of ``audit``: one replayed bundle -> the evidence per GT and the suspected label issues.

Everything here reads what the replay computed already (:class:`~yolodbg.result.LossResult`):
the class scores of every anchor before NMS, the decoded boxes (only of the anchors that score
at all: a lazy tensor answers those rows without decoding the whole batch), the assigned
positives of each GT and the per-GT loss from the breakdown. Per image:

- the *evidence anchors*: every anchor whose best class score reaches
  :data:`~yolodbg.audit.scoring.ANCHOR_FLOOR`, with its decoded box and the IoU of that box with
  every GT of the image;
- per GT: the best score of its own class and of any other class among the anchors whose box is
  on it (IoU ≥ 0.5, and it is their best GT), the best score of any class among the anchors
  touching it (IoU ≥ 0.3: support), the consensus box of the anchors of its class that agree on
  one object near it (seeded by the anchor with the best score × IoU², box = score-weighted mean
  of the anchors overlapping the seed's box), and what its assigned positives predict;
- free clusters: confident anchors whose box overlaps no GT, grouped greedily by score (IoU ≥ 0.6
  with the cluster's seed), each a candidate missing label;
- same-class GT pairs with IoU ≥ 0.9 (duplicates).

Boxes in the issues are COCO ``[x, y, w, h]`` in original-image pixels, through each image's
letterbox (as ``evaluate`` maps detections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from yolodbg.audit import scoring as sc

if TYPE_CHECKING:
    from yolodbg.class_names import ClassNames

EDGES = ("left", "top", "right", "bottom")


@dataclass
class BundleAudit:
    """What one bundle contributes to the audit (picklable, small: no tensors)."""

    source: str
    recipe: str
    images: list[dict[str, Any]]  # image_id, file_name, gts, width, height
    issues: list[dict[str, Any]]  # candidates, any score above scoring.FLOOR_SCORE
    gts: list[dict[str, Any]]  # one evidence row per GT (for --rows)
    names: list[str] | None = None
    epoch: Any = None
    warnings: list[str] = field(default_factory=list)
    nonfinite: str | None = None

    @property
    def batch_size(self) -> int:  # the progress bar counts images
        return len(self.images)


def _rows_of(x: Any, b: int, idx: Tensor) -> Tensor:
    """``x[b, idx]`` for a (B, N, C) tensor or a lazy one (only those anchors are decoded)."""
    if hasattr(x, "materialize") and not getattr(x, "is_materialized", True):
        return x[torch.full_like(idx, b), idx].float()
    return x[b, idx].float()


def _full(x: Any) -> Tensor:
    return x.materialize() if hasattr(x, "materialize") else x


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _to_original(targets, i: int, boxes: np.ndarray) -> np.ndarray:
    """``(K, 4)`` xyxy input pixels -> original-image pixels through image ``i``'s letterbox."""
    lb = targets.letterboxes[i] if i < len(targets.letterboxes) else None
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if lb is None:
        return boxes
    pad = np.array([lb.pad_left, lb.pad_top, lb.pad_left, lb.pad_top])
    gain = np.array([lb.scale_x, lb.scale_y, lb.scale_x, lb.scale_y])
    return (boxes - pad) / gain


def iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU of every xyxy pair ``(N, 4) x (M, 4) -> (N, M)`` (as geometry.pairwise_iou, in numpy)."""
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _edges(gt: np.ndarray, cons: np.ndarray) -> dict[str, float]:
    """How far each edge of the consensus box lies from the GT's (original pixels, + = right/down)."""
    return {e: round(float(cons[k] - gt[k]), 1) for k, e in enumerate(EDGES)}


@dataclass
class _Image:
    """The evidence anchors of one image and their overlaps with its GTs (numpy: many small steps)."""

    boxes: np.ndarray  # (K, 4) xyxy input pixels
    scores: np.ndarray  # (K, nc)
    iou: np.ndarray  # (K, M) with the image's GTs
    best_gt: np.ndarray  # (K,) index of the best-overlapping GT (-1: the image has none)
    best_iou: np.ndarray  # (K,)


def _evidence_anchors(result, scores: Tensor, b: int, gt_boxes: np.ndarray) -> _Image:
    best = scores[b].amax(1)
    idx = (best >= sc.ANCHOR_FLOOR).nonzero().flatten()
    if idx.numel() > sc.MAX_ANCHORS:
        idx = idx[best[idx].topk(sc.MAX_ANCHORS).indices]
    k = idx.numel()
    boxes = _rows_of(result.pred_boxes, b, idx).double().numpy() if k else np.zeros((0, 4))
    s = scores[b, idx].double().numpy()
    m = gt_boxes.shape[0]
    iou = iou_np(boxes, gt_boxes) if m and k else np.zeros((k, m))
    if m and k:
        best_gt, best_iou = iou.argmax(1), iou.max(1)
    else:
        best_gt, best_iou = np.full(k, -1), np.zeros(k)
    return _Image(boxes, s, iou, best_gt, best_iou)


def _consensus(img: _Image, cls: int, members: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """Score-weighted mean box of the anchors in ``members`` whose box overlaps the seed's ≥ 0.6."""
    boxes = img.boxes[members]
    near = iou_np(boxes, img.boxes[seed : seed + 1])[:, 0] >= sc.CLUSTER_IOU
    w = img.scores[members[near], cls]
    box = (boxes[near] * w[:, None]).sum(0) / max(float(w.sum()), 1e-12)
    return box, int(near.sum())


def _gt_evidence(img: _Image, g: int, cls: int, mine: np.ndarray, gt_box: np.ndarray) -> dict[str, Any]:
    """Class scores on the GT, support around it, and the consensus box of its class.

    ``mine``: (K,) the anchors whose best-overlapping GT *of this class* is this one."""
    ev: dict[str, Any] = {"consensus": None}
    if not img.iou.size:
        ev.update(anchors_on=0, own_score=0.0, other_score=0.0, other_class=None, support=0.0)
        return ev
    col = img.iou[:, g]
    mine_any = img.best_gt == g
    on = mine_any & (col >= sc.OWN_IOU)
    s_on = img.scores[on]
    ev["anchors_on"] = int(on.sum())
    ev["own_score"] = float(s_on[:, cls].max()) if len(s_on) else 0.0
    if len(s_on) and s_on.shape[1] > 1:
        other = s_on.copy()
        other[:, cls] = -1.0
        a, k = np.unravel_index(int(other.argmax()), other.shape)
        ev["other_score"], ev["other_class"] = float(other[a, k]), int(k)
    else:
        ev["other_score"], ev["other_class"] = 0.0, None
    touch = mine_any & (col >= sc.SUPPORT_IOU)
    ev["support"] = float(img.scores[touch].max()) if touch.any() else 0.0
    members = np.flatnonzero(mine & (col >= sc.ATTACH_IOU) & (img.scores[:, cls] >= sc.ANCHOR_FLOOR))
    if len(members):
        fit = img.scores[members, cls] * col[members] ** 2  # IoU squared: its own object beats a neighbour
        seed = int(members[fit.argmax()])
        box, agree = _consensus(img, cls, members, seed)
        ev["consensus"] = box
        ev["consensus_score"] = float(img.scores[seed, cls])
        ev["consensus_iou"] = float(iou_np(box[None], gt_box[None])[0, 0])
        ev["consensus_anchors"] = agree
    return ev


def _positives_evidence(result, scores: Tensor, cls: Tensor) -> dict[int, dict[str, Any]]:
    """Per GT row: its assigned positives, the mean score they give its class and the best other."""
    pos = result.positives
    out: dict[int, dict[str, Any]] = {}
    if pos.gt.numel() == 0:
        return out
    s = scores[pos.image, pos.anchor].double().numpy()  # (P, nc)
    gt = pos.gt.numpy()
    iou = pos.iou.double().numpy()
    cls = cls.numpy()
    order = np.argsort(gt, kind="stable")
    rows, starts, counts = np.unique(gt[order], return_index=True, return_counts=True)
    for r, a, n in zip(rows.tolist(), starts.tolist(), counts.tolist(), strict=True):
        if r < 0:
            continue
        sel = order[a : a + n]
        mean = s[sel].mean(0)
        c = int(cls[r])
        own = float(mean[c])
        if len(mean) > 1:
            mean[c] = -1.0
            k = int(mean.argmax())
            other, other_cls = float(mean[k]), k
        else:
            other, other_cls = 0.0, None
        pi = iou[sel]
        out[r] = {
            "positives": n,
            "pos_own_score": round(own, 4),
            "pos_other_score": round(other, 4),
            "pos_other_class": other_cls,
            "pos_iou": round(float(pi.mean()), 4) if np.isfinite(pi).all() else None,
        }
    return out


def _free_clusters(img: _Image) -> list[dict[str, Any]]:
    """Confident anchors whose boxes overlap no GT much, grouped greedily best first."""
    if not len(img.scores):
        return []
    best, cls = img.scores.max(1), img.scores.argmax(1)
    free = np.flatnonzero((img.best_iou < sc.FREE_IOU) & (best >= sc.MISSING_FLOOR))
    if not len(free):
        return []
    free = free[np.argsort(-best[free], kind="stable")]
    taken = np.zeros(len(free), dtype=bool)
    overlaps = iou_np(img.boxes[free], img.boxes[free])
    out = []
    for j in range(len(free)):
        if taken[j]:
            continue
        group = (~taken) & (overlaps[j] >= sc.CLUSTER_IOU)
        taken |= group
        a = free[group]
        k = int(cls[free[j]])
        w = img.scores[a, k]
        box = (img.boxes[a] * w[:, None]).sum(0) / max(float(w.sum()), 1e-12)
        top = float(best[free[j]])
        out.append({"box": box, "score": top, "class": k, "anchors": int((w >= 0.5 * top).sum())})
    return out


def _attribution(img: _Image, cls_in: np.ndarray) -> np.ndarray:
    """(K, M) bool: anchor k's best-overlapping GT among the GTs of class c is GT g (c = g's class)."""
    k, m = img.iou.shape
    out = np.zeros((k, m), dtype=bool)
    if not k or not m:
        return out
    for c in np.unique(cls_in):
        cols = np.flatnonzero(cls_in == c)
        best = cols[img.iou[:, cols].argmax(1)]
        out[np.arange(k), best] = True
    return out


def audit_explanation(ex, names: ClassNames | None = None, image_ids: list | None = None) -> BundleAudit:
    """The evidence and candidate issues of one explained bundle (see the module docstring);
    ``names``: how classes are written (``square (2)``, as every report); ``image_ids``: each
    image's id in the COCO json (else the bundle's own ids)."""
    result, targets, bd = ex.result, ex.targets, ex.breakdown
    scores = _full(result.pred_scores)
    gt_boxes_all = targets.boxes_xyxy().numpy()
    cls_all = targets.cls.numpy()
    pos_ev = _positives_evidence(result, scores, targets.cls)
    gt_rows = {g.row: g for g in bd.gts}
    first = targets.first_row.tolist()
    images, issues, gts = [], [], []
    for i in range(targets.batch_size):
        info = ex.bundle.images[i]
        image_id = image_ids[i] if image_ids and image_ids[i] is not None else info.image_id
        rows = list(range(first[i], first[i + 1]))
        g_in, cls_in = gt_boxes_all[rows], cls_all[rows]
        img = _evidence_anchors(result, scores, i, g_in)
        orig_gt = _to_original(targets, i, g_in)
        h, w = _orig_size(targets, i)
        images.append(
            {"image_id": image_id, "file_name": info.file_name, "gts": len(rows), "width": w, "height": h}
        )
        attributed = _attribution(img, cls_in)
        claimed: list[np.ndarray] = []
        image_gts = []
        for g, r in enumerate(rows):
            c = int(cls_in[g])
            ev = _gt_evidence(img, g, c, attributed[:, g], g_in[g])
            cons = _to_original(targets, i, ev["consensus"])[0] if ev["consensus"] is not None else None
            base = _gt_base(targets, r, c, image_id, orig_gt[g], gt_rows.get(r), names)
            base["evidence"] = {**_rounded(ev, orig_gt[g], cons, names), **pos_ev.get(r, {"positives": 0})}
            image_gts.append(base)
            issues += _gt_issues(base, ev, targets.category_ids, names)
            if ev["consensus"] is not None:  # the object this GT's class agrees on is explained by it
                claimed.append(ev["consensus"])
        gts += image_gts
        issues += _duplicates(image_gts, g_in, cls_in)
        for cl in _free_clusters(img):
            issue = _missing(cl, g_in, claimed, targets, i, image_id, names)
            if issue is not None:
                issues.append(issue)
    nonfinite = ex.nonfinite.message if ex.nonfinite is not None else None
    return BundleAudit(
        source=str(ex.bundle.source),
        recipe=ex.recipe.spec(),
        images=images,
        issues=[x for x in issues if x["score"] >= sc.FLOOR_SCORE],
        gts=gts,
        names=name_list(names),
        epoch=ex.bundle.meta.get("epoch"),
        warnings=[*result.warnings, *targets.warnings],
        nonfinite=nonfinite,
    )


def _orig_size(targets, i: int) -> tuple[int, int]:
    from yolodbg.evaluate.decode import original_size

    return original_size(targets, i)


def class_name(names: ClassNames | None, k: int | None) -> str | None:
    """Class index ``k`` as every report writes it: ``square (2)``, or the id alone."""
    if k is None:
        return None
    return names.label(k) if names is not None else str(k)


def name_list(names: ClassNames | None) -> list[str] | None:
    """The names by class index (the document's ``names``), None when there are none."""
    if names is None or not names.names:
        return None
    return [names.names.get(k, str(names.id_of(k))) for k in range(max(names.names) + 1)]


def _gt_base(targets, r: int, c: int, image_id, orig_box: np.ndarray, row, names) -> dict[str, Any]:
    ann_id = targets.ann_ids[r] if r < len(targets.ann_ids) else None
    return {
        "image_id": image_id,
        "ann_id": ann_id,
        "ann_key": ann_id if ann_id is not None else f"row{r}",
        "class": c,
        "category_id": targets.category_ids[c]
        if targets.category_ids and c < len(targets.category_ids)
        else None,
        "class_name": class_name(names, c),
        "bbox": _xywh(orig_box),
        "loss": round(row.total, 6) if row is not None else None,
        "loss_share": round(row.share, 6) if row is not None else None,
    }


def _rounded(ev: dict[str, Any], orig_gt: np.ndarray, orig_cons: np.ndarray | None, names) -> dict[str, Any]:
    out = {
        "own_score": round(ev["own_score"], 4),
        "other_score": round(ev["other_score"], 4),
        "other_class": class_name(names, ev["other_class"]),
        "support": round(ev["support"], 4),
        "anchors_on": ev["anchors_on"],
    }
    if orig_cons is not None:
        out["consensus_bbox"] = _xywh(orig_cons)
        out["consensus_iou"] = round(ev["consensus_iou"], 4)
        out["consensus_score"] = round(ev["consensus_score"], 4)
        out["consensus_anchors"] = ev["consensus_anchors"]
        out["edges_px"] = _edges(orig_gt, orig_cons)
    return out


def _issue(kind: str, score: float, base: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": kind, "score": round(score, 6), **base, **extra}


def _gt_issues(base: dict[str, Any], ev: dict[str, Any], cat_ids, names) -> list[dict[str, Any]]:
    """The GT-based issue types, each scored from its evidence (at most one per type)."""
    out = []
    e = base["evidence"]
    pos_own, pos_other = e.get("pos_own_score") or 0.0, e.get("pos_other_score") or 0.0
    wc = sc.wrong_class(ev["own_score"], ev["other_score"], pos_own, pos_other)
    if wc >= sc.FLOOR_SCORE:
        by_anchors = ev["other_score"] - ev["own_score"] >= pos_other - pos_own
        k = ev["other_class"] if by_anchors else e.get("pos_other_class")
        out.append(
            _issue(
                "wrong_class",
                wc,
                base,
                suggested_class=k,
                suggested_class_name=class_name(names, k),
                suggested_category_id=cat_ids[k] if cat_ids and k is not None and k < len(cat_ids) else None,
            )
        )
    # an object of its class that the GT partly covers is support too (then the box is bad, not spurious)
    sp = sc.spurious_label(sc.spurious_support({**base["evidence"], **ev}))
    if sp >= sc.FLOOR_SCORE:
        out.append(_issue("spurious_label", sp, base))
    if ev["consensus"] is not None:
        bb = sc.bad_box(ev["consensus_score"], ev["consensus_iou"])
        if bb >= sc.FLOOR_SCORE:
            out.append(_issue("bad_box", bb, base, suggested_bbox=base["evidence"]["consensus_bbox"]))
    return out


def _duplicates(gts: list[dict[str, Any]], g_in: np.ndarray, cls_in: np.ndarray) -> list[dict[str, Any]]:
    """Same-class GT pairs with IoU ≥ 0.9: the later annotation is the suspect."""
    if len(gts) < 2:
        return []
    iou = iou_np(g_in, g_in)
    out = []
    for a in range(len(gts)):
        for b in range(a + 1, len(gts)):
            if cls_in[a] != cls_in[b]:
                continue
            s = sc.duplicate_label(float(iou[a, b]))
            if s >= sc.FLOOR_SCORE:
                issue = _issue("duplicate_label", s, {k: v for k, v in gts[b].items() if k != "evidence"})
                issue["evidence"] = {"duplicate_of": gts[a]["ann_id"], "iou": round(float(iou[a, b]), 4)}
                out.append(issue)
    return out


def _inside(box: np.ndarray, regions: np.ndarray) -> float:
    """The largest fraction of ``box``'s area inside one of ``regions`` (xyxy)."""
    lt = np.maximum(box[:2], regions[:, :2])
    rb = np.minimum(box[2:], regions[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = float(np.clip(box[2:] - box[:2], 0, None).prod())
    return float((inter / max(area, 1e-12)).max())


def _missing(
    cl: dict, g_in: np.ndarray, claimed: list[np.ndarray], targets, i: int, image_id, names
) -> dict | None:
    """A free cluster as a missing label, unless a GT explains it (it is the object a GT's class agrees on)."""
    box = cl["box"]
    if claimed and float(iou_np(box[None], np.stack(claimed)).max()) >= sc.CLUSTER_IOU:
        return None
    free_iou = float(iou_np(box[None], g_in).max()) if len(g_in) else 0.0
    ignored = [x.box_xyxy for x in targets.ignored if x.image_index == i]
    if ignored and _inside(box, np.array(ignored, dtype=np.float64)) >= 0.5:
        return None  # mostly inside a crowd / ignored region: not a missing label
    s = sc.missing_label(cl["score"], free_iou)
    orig = _to_original(targets, i, box)[0]
    k = cl["class"]
    cat = targets.category_ids[k] if targets.category_ids and k < len(targets.category_ids) else None
    base = {
        "image_id": image_id,
        "ann_id": None,
        "ann_key": None,
        "class": k,
        "category_id": cat,
        "class_name": class_name(names, k),
        "bbox": _xywh(orig),
        "loss": None,
        "loss_share": None,
    }
    ev = {"score": round(cl["score"], 4), "anchors": cl["anchors"], "best_gt_iou": round(free_iou, 4)}
    return _issue("missing_label", s, base, evidence=ev)
