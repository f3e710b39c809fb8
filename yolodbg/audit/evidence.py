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
  one object near it (seeded by the anchor with the best score × IoU, box = score-weighted mean
  of the anchors overlapping the seed's box), and what its assigned positives predict;
- free clusters: confident anchors whose box overlaps no GT, grouped greedily by score (IoU ≥ 0.6
  with the cluster's seed), each a candidate missing label;
- same-class GT pairs with IoU ≥ 0.9 (duplicates).

Boxes in the issues are COCO ``[x, y, w, h]`` in original-image pixels, through each image's
letterbox (as ``evaluate`` maps detections).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from yolodbg.audit import scoring as sc
from yolodbg.geometry import pairwise_iou

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


def _xywh(box: Tensor | list[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]


def _to_original(targets, i: int, boxes: Tensor) -> Tensor:
    lb = targets.letterboxes[i] if i < len(targets.letterboxes) else None
    boxes = boxes.double()
    return lb.to_original_boxes(boxes) if lb is not None else boxes


def _edges(gt: Tensor, cons: Tensor) -> dict[str, float]:
    """How far each edge of the consensus box lies from the GT's (original pixels, + = right/down)."""
    return {e: round(float(cons[k] - gt[k]), 1) for k, e in enumerate(EDGES)}


@dataclass
class _Image:
    """The evidence anchors of one image and their overlaps with its GTs."""

    boxes: Tensor  # (K, 4) xyxy input pixels
    scores: Tensor  # (K, nc)
    iou: Tensor  # (K, M) with the image's GTs
    best_gt: Tensor  # (K,) index among the image's GTs of the best-overlapping one (-1: no GT)
    best_iou: Tensor  # (K,)


def _evidence_anchors(result, scores: Tensor, b: int, gt_boxes: Tensor) -> _Image:
    best = scores[b].amax(1)
    idx = (best >= sc.ANCHOR_FLOOR).nonzero().flatten()
    if idx.numel() > sc.MAX_ANCHORS:
        idx = idx[best[idx].topk(sc.MAX_ANCHORS).indices]
    boxes = _rows_of(result.pred_boxes, b, idx) if idx.numel() else torch.zeros(0, 4)
    s = scores[b, idx].float()
    m = gt_boxes.shape[0]
    iou = pairwise_iou(boxes, gt_boxes.float()) if m and idx.numel() else torch.zeros(idx.numel(), m)
    if m:
        best_iou, best_gt = iou.max(1) if idx.numel() else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    else:
        best_iou, best_gt = torch.zeros(idx.numel()), torch.full((idx.numel(),), -1, dtype=torch.long)
    return _Image(boxes, s, iou, best_gt, best_iou)


def _consensus(img: _Image, cls: int, members: Tensor, seed: int) -> tuple[Tensor, int]:
    """Score-weighted mean box of the anchors in ``members`` whose box overlaps the seed's ≥ 0.6."""
    boxes = img.boxes[members]
    near = pairwise_iou(boxes, img.boxes[seed : seed + 1]).flatten() >= sc.CLUSTER_IOU
    w = img.scores[members[near], cls]
    box = (boxes[near] * w[:, None]).sum(0) / w.sum().clamp_min(1e-12)
    return box, int(near.sum())


def _gt_evidence(img: _Image, g: int, cls: int, same_cls: Tensor, gt_box: Tensor) -> dict[str, Any]:
    """Class scores on the GT, support around it, and the consensus box of its class."""
    ev: dict[str, Any] = {}
    on = (
        (img.best_gt == g) & (img.iou[:, g] >= sc.OWN_IOU)
        if img.iou.numel()
        else torch.zeros(0, dtype=torch.bool)
    )
    s_on = img.scores[on]
    ev["anchors_on"] = int(on.sum())
    ev["own_score"] = float(s_on[:, cls].max()) if s_on.numel() else 0.0
    if s_on.numel() and s_on.shape[1] > 1:
        other = s_on.clone()
        other[:, cls] = -1.0
        best, k = other.max(1)
        j = int(best.argmax())
        ev["other_score"], ev["other_class"] = float(best[j]), int(k[j])
    else:
        ev["other_score"], ev["other_class"] = 0.0, None
    touch = (img.best_gt == g) & (img.iou[:, g] >= sc.SUPPORT_IOU) if img.iou.numel() else on
    ev["support"] = float(img.scores[touch].max()) if touch.any() else 0.0
    # the consensus of its class: anchors whose best same-class GT is this one
    ev["consensus"] = None
    if img.iou.numel():
        same = img.iou[:, same_cls]
        mine = same.argmax(1) == int((same_cls == g).nonzero()[0, 0]) if same.numel() else on
        members = (
            (mine & (img.iou[:, g] >= sc.ATTACH_IOU) & (img.scores[:, cls] >= sc.ANCHOR_FLOOR))
            .nonzero()
            .flatten()
        )
        if members.numel():
            fit = img.scores[members, cls] * img.iou[members, g]
            seed = int(members[fit.argmax()])
            box, agree = _consensus(img, cls, members, seed)
            ev["consensus"] = box
            ev["consensus_score"] = float(img.scores[seed, cls])
            ev["consensus_iou"] = float(pairwise_iou(box[None], gt_box[None].float())[0, 0])
            ev["consensus_anchors"] = agree
    return ev


def _positives_evidence(result, rows: Tensor, scores: Tensor, cls: Tensor) -> dict[int, dict[str, Any]]:
    """Per GT row: its assigned positives, the mean score they give its class and the best other."""
    pos = result.positives
    out: dict[int, dict[str, Any]] = {}
    if pos.gt.numel() == 0:
        return out
    s = scores[pos.image, pos.anchor].float()  # (P, nc)
    for r in rows.tolist():
        sel = pos.gt == r
        n = int(sel.sum())
        if not n:
            out[r] = {"positives": 0}
            continue
        sr = s[sel]
        c = int(cls[r])
        own = float(sr[:, c].mean())
        mean = sr.mean(0)
        if mean.numel() > 1:
            mean[c] = -1.0
            k = int(mean.argmax())
            other, other_cls = float(mean[k]), k
        else:
            other, other_cls = 0.0, None
        iou = pos.iou[sel].float()
        out[r] = {
            "positives": n,
            "pos_own_score": round(own, 4),
            "pos_other_score": round(other, 4),
            "pos_other_class": other_cls,
            "pos_iou": round(float(iou.mean()), 4) if torch.isfinite(iou).all() else None,
        }
    return out


def _free_clusters(img: _Image) -> list[dict[str, Any]]:
    """Confident anchors whose boxes overlap no GT, grouped greedily best first."""
    best, cls = (
        img.scores.max(1) if img.scores.numel() else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    )
    free = ((img.best_iou < sc.FREE_IOU) & (best >= sc.MISSING_FLOOR)).nonzero().flatten()
    if not free.numel():
        return []
    free = free[best[free].argsort(descending=True)]
    taken = torch.zeros(free.numel(), dtype=torch.bool)
    overlaps = pairwise_iou(img.boxes[free], img.boxes[free])
    out = []
    for j in range(free.numel()):
        if taken[j]:
            continue
        group = (~taken) & (overlaps[j] >= sc.CLUSTER_IOU)
        taken |= group
        a = free[group]
        k = int(cls[free[j]])
        w = img.scores[a, k]
        box = (img.boxes[a] * w[:, None]).sum(0) / w.sum().clamp_min(1e-12)
        agree = int((img.scores[a, k] >= 0.5 * float(best[free[j]])).sum())
        out.append({"box": box, "score": float(best[free[j]]), "class": k, "anchors": agree})
    return out


def audit_explanation(ex, names: list[str] | None = None, image_ids: list | None = None) -> BundleAudit:
    """The evidence and candidate issues of one explained bundle (see the module docstring);
    ``image_ids``: each image's id in the COCO json (else the bundle's own ids)."""
    result, targets, bd = ex.result, ex.targets, ex.breakdown
    scores = _full(result.pred_scores)
    gt_boxes_all = targets.boxes_xyxy()
    pos_ev = _positives_evidence(result, torch.arange(len(targets)), scores, targets.cls)
    gt_rows = {g.row: g for g in bd.gts}
    first = targets.first_row.tolist()
    images, issues, gts = [], [], []
    for i in range(targets.batch_size):
        info = ex.bundle.images[i]
        image_id = image_ids[i] if image_ids and image_ids[i] is not None else info.image_id
        rows = torch.arange(first[i], first[i + 1])
        g_in = gt_boxes_all[rows]
        img = _evidence_anchors(result, scores, i, g_in)
        orig_gt = _to_original(targets, i, g_in)
        h, w = _orig_size(targets, i)
        images.append(
            {"image_id": image_id, "file_name": info.file_name, "gts": len(rows), "width": w, "height": h}
        )
        cls_in = targets.cls[rows]
        claimed: list[Tensor] = []
        for g, r in enumerate(rows.tolist()):
            c = int(cls_in[g])
            same_cls = (cls_in == c).nonzero().flatten()
            ev = _gt_evidence(img, g, c, same_cls, g_in[g])
            row = gt_rows.get(r)
            base = _gt_base(targets, r, c, image_id, orig_gt[g], row, names)
            base["evidence"] = {
                **_rounded(
                    ev,
                    orig_gt[g],
                    _to_original(targets, i, ev["consensus"][None])[0]
                    if ev["consensus"] is not None
                    else None,
                    names,
                ),
                **pos_ev.get(r, {}),
            }
            gts.append(base)
            issues += _gt_issues(base, ev, targets.category_ids, names)
            if ev["consensus"] is not None:  # the object this GT's class agrees on is explained by it
                claimed.append(ev["consensus"])
        issues += _duplicates(gts[len(gts) - len(rows) :], targets, rows, g_in, cls_in)
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
        names=names,
        epoch=ex.bundle.meta.get("epoch"),
        warnings=[*result.warnings, *targets.warnings],
        nonfinite=nonfinite,
    )


def _orig_size(targets, i: int) -> tuple[int, int]:
    from yolodbg.evaluate.decode import original_size

    return original_size(targets, i)


def class_name(names: list[str] | None, k: int | None) -> str | None:
    if k is None:
        return None
    return f"{names[k]} ({k})" if names and 0 <= k < len(names) else str(k)


def _gt_base(targets, r: int, c: int, image_id, orig_box: Tensor, row, names) -> dict[str, Any]:
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


def _rounded(ev: dict[str, Any], orig_gt: Tensor, orig_cons: Tensor | None, names) -> dict[str, Any]:
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
    wc = sc.wrong_class(ev["own_score"], ev["other_score"])
    if wc >= sc.FLOOR_SCORE:
        k = ev["other_class"]
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
    sp = sc.spurious_label(max(ev["support"], ev.get("consensus_score", 0.0)))
    if sp >= sc.FLOOR_SCORE:
        out.append(_issue("spurious_label", sp, base))
    if ev["consensus"] is not None:
        bb = sc.bad_box(ev["consensus_score"], ev["consensus_iou"])
        if bb >= sc.FLOOR_SCORE:
            out.append(_issue("bad_box", bb, base, suggested_bbox=base["evidence"]["consensus_bbox"]))
    return out


def _duplicates(
    gts: list[dict[str, Any]], targets, rows: Tensor, g_in: Tensor, cls_in: Tensor
) -> list[dict[str, Any]]:
    """Same-class GT pairs with IoU ≥ 0.9: the later annotation is the suspect."""
    if len(rows) < 2:
        return []
    iou = pairwise_iou(g_in.float(), g_in.float())
    out = []
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            if int(cls_in[a]) != int(cls_in[b]):
                continue
            s = sc.duplicate_label(float(iou[a, b]))
            if s >= sc.FLOOR_SCORE:
                first, dup = gts[a], gts[b]
                issue = _issue("duplicate_label", s, {k: v for k, v in dup.items() if k != "evidence"})
                issue["evidence"] = {"duplicate_of": first["ann_id"], "iou": round(float(iou[a, b]), 4)}
                out.append(issue)
    return out


def _inside(box: Tensor, regions: Tensor) -> float:
    """The largest fraction of ``box``'s area inside one of ``regions`` (xyxy)."""
    lt = torch.maximum(box[:2], regions[:, :2])
    rb = torch.minimum(box[2:], regions[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    return float((inter / area.clamp_min(1e-12)).max())


def _missing(cl: dict, g_in: Tensor, claimed: list[Tensor], targets, i: int, image_id, names) -> dict | None:
    """A free cluster as a missing label, unless a GT's bad box already explains it."""
    box = cl["box"]
    if claimed and float(pairwise_iou(box[None], torch.stack(claimed)).max()) >= sc.CLUSTER_IOU:
        return None
    free_iou = float(pairwise_iou(box[None], g_in.float()).max()) if g_in.numel() else 0.0
    ignored = [x.box_xyxy for x in targets.ignored if x.image_index == i]
    if ignored and _inside(box, torch.tensor(ignored, dtype=torch.float32)) >= 0.5:
        return None  # mostly inside a crowd / ignored region: not a missing label
    s = sc.missing_label(cl["score"], free_iou)
    orig = _to_original(targets, i, box[None])[0]
    k = cl["class"]
    return _issue(
        "missing_label",
        s,
        {
            "image_id": image_id,
            "ann_id": None,
            "ann_key": None,
            "class": k,
            "category_id": targets.category_ids[k]
            if targets.category_ids and k < len(targets.category_ids)
            else None,
            "class_name": class_name(names, k),
            "bbox": _xywh(orig),
            "loss": None,
            "loss_share": None,
        },
        evidence={
            "score": round(cl["score"], 4),
            "anchors": cl["anchors"],
            "best_gt_iou": round(free_iou, 4),
        },
    )
