"""``audit --suggest``: a proposed corrected COCO json, for review (the input is never touched).

The input json is copied and the issues scoring at least ``min_score`` are applied, the best
issue per annotation only: ``wrong_class`` changes ``category_id``, ``bad_box`` moves ``bbox`` to
the box the model's anchors agree on, ``missing_label`` adds an annotation, ``spurious_label`` and
``duplicate_label`` remove one. Every changed or added annotation carries ``"yolodbg_audit"``
(issue id, type, score, the old value); removed annotations are kept whole under the top-level
``"yolodbg_audit"`` record with their issue id, so every change can be traced and undone.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from yolodbg.errors import GroundTruthError

DEFAULT_MIN_SCORE = 0.5


def _read(gt: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(gt).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GroundTruthError(f"{gt}: cannot read the COCO json ({e}); pass the json audit read") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise GroundTruthError(f"{gt}: field annotations: not a list; pass a COCO detection json")
    return data


def _mark(ann: dict[str, Any], issue: dict[str, Any], **old: Any) -> None:
    ann["yolodbg_audit"] = {"issue": issue["id"], "type": issue["type"], "score": issue["score"], **old}


def suggest(doc: dict[str, Any], gt: str | Path, min_score: float = DEFAULT_MIN_SCORE) -> dict[str, Any]:
    """The corrected copy of ``gt`` with the issues of ``doc`` (an audit document) applied."""
    data = copy.deepcopy(_read(gt))
    anns = {a.get("id"): a for a in data["annotations"] if isinstance(a, dict)}
    chosen: dict[Any, dict[str, Any]] = {}
    added, removed, skipped = [], [], 0
    next_id = max((a for a in anns if isinstance(a, int)), default=0) + 1
    for x in doc["issues"]:  # best first: the first issue of an annotation wins
        if x["score"] < min_score:
            break
        if x["type"] == "missing_label":
            ann = {
                "id": next_id,
                "image_id": x["image_id"],
                "category_id": x["category_id"],
                "bbox": x["bbox"],
                "area": round(x["bbox"][2] * x["bbox"][3], 2),
                "iscrowd": 0,
            }
            _mark(ann, x)
            added.append(ann)
            next_id += 1
            continue
        ann = anns.get(x["ann_id"])
        if ann is None or x["ann_id"] in chosen:
            skipped += 1
            continue
        chosen[x["ann_id"]] = x
        if x["type"] == "wrong_class" and x.get("suggested_category_id") is not None:
            _mark(ann, x, old_category_id=ann.get("category_id"))
            ann["category_id"] = x["suggested_category_id"]
        elif x["type"] == "bad_box" and x.get("suggested_bbox"):
            _mark(ann, x, old_bbox=ann.get("bbox"))
            ann["bbox"] = x["suggested_bbox"]
            ann["area"] = round(ann["bbox"][2] * ann["bbox"][3], 2)
            ann.pop("segmentation", None)  # the old polygon no longer matches the box
        elif x["type"] in ("spurious_label", "duplicate_label"):
            removed.append({"issue": x["id"], "type": x["type"], "score": x["score"], "annotation": ann})
    gone = {id(r["annotation"]) for r in removed}
    data["annotations"] = [a for a in data["annotations"] if id(a) not in gone] + added
    data["yolodbg_audit"] = {
        "source": str(gt),
        "min_score": min_score,
        "changed": sum(1 for a in data["annotations"] if isinstance(a, dict) and "yolodbg_audit" in a)
        - len(added),
        "added": len(added),
        "removed": removed,
    }
    return data
