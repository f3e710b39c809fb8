"""``yolodbg audit``: each issue type found on a constructed case, the clean labels not flagged,
the document valid, the options, and bad input (one line, exit 2, nothing overwritten).

The cases start from the sample YOLOv8n bundle (4 images) and its COCO json and change one label:
a class swapped, a box shifted, a box dropped, a box added on an empty image, a box duplicated.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from yolodbg.audit import audit
from yolodbg.audit import scoring as sc
from yolodbg.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
BUNDLE = SAMPLE / "yolov8n_val.pt"
COCO = SAMPLE / "coco_val.json"
FLAG = 0.5  # a constructed error must score at least this; the clean labels of confident GTs stay below CLEAN
CLEAN = 0.3


def _coco() -> dict:
    return json.loads(COCO.read_text())


def _write(tmp_path: Path, data: dict, name: str = "gt.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def _ann(data: dict, ann_id: int) -> dict:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _iou(a, b) -> float:
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def _run(gt: Path, paths=(BUNDLE,)) -> dict:
    doc = audit([str(p) for p in paths], gt, workers=1)
    assert validate(doc, "yolodbg.audit/1") == []
    return doc


def _found(doc: dict, kind: str, **match) -> dict:
    hits = [x for x in doc["issues"] if x["type"] == kind and all(x.get(k) == v for k, v in match.items())]
    assert hits, (
        f"no {kind} issue matching {match}; top: {[(x['type'], x['ann_id'], x['score']) for x in doc['issues'][:5]]}"
    )
    return hits[0]


@pytest.fixture(scope="module")
def clean() -> dict:
    return _run(COCO)


def test_clean_labels_of_confident_gts_are_not_flagged(clean):
    confident = {1, 3, 4, 5, 6, 7, 9, 14, 18, 20, 22, 24, 25, 27, 28}  # own-class score ≥ 0.85 on the sample
    flagged = [(x["ann_id"], x["type"], x["score"]) for x in clean["issues"] if x["ann_id"] in confident]
    assert all(s < CLEAN for _, _, s in flagged), flagged
    assert not any(
        x["type"] in ("missing_label", "duplicate_label") and x["score"] >= CLEAN for x in clean["issues"]
    )
    empty = clean["images"][-1]  # the image without objects: the least suspect, a faint blob or two at most
    assert empty["image_id"] == 4 and empty["score"] < 0.1


def test_every_audited_image_is_listed_once(clean):
    assert sorted(im["image_id"] for im in clean["images"]) == [1, 2, 3, 4]
    assert clean["num_gt"] == 27 and clean["bundles"] == 1 and clean["checkpoints"] == 1


def test_wrong_class_is_found_and_names_both_classes(tmp_path):
    data = _coco()
    _ann(data, 4)["category_id"] = 2  # a circle labelled square
    doc = _run(_write(tmp_path, data))
    x = _found(doc, "wrong_class", ann_id=4)
    assert x["score"] >= FLAG and doc["issues"][0]["id"] == x["id"]
    assert x["class_name"] == "square (2)" and x["suggested_class_name"] == "circle (1)"  # name (category id)
    assert x["suggested_category_id"] == 1
    assert x["evidence"]["other_score"] > 0.9 > 0.1 > x["evidence"]["own_score"]


def test_bad_box_is_found_with_the_edges_that_moved(tmp_path):
    data = _coco()
    true = list(_ann(data, 6)["bbox"])
    _ann(data, 6)["bbox"] = [true[0] + 30, true[1], true[2], true[3]]  # IoU 1/3 with the object
    doc = _run(_write(tmp_path, data))
    x = _found(doc, "bad_box", ann_id=6)
    assert x["score"] >= FLAG and doc["issues"][0]["id"] == x["id"]
    assert _iou(x["suggested_bbox"], true) > 0.85
    edges = x["evidence"]["edges_px"]
    assert edges["left"] == pytest.approx(-30, abs=4) and edges["right"] == pytest.approx(-30, abs=4)
    assert abs(edges["top"]) < 4 and abs(edges["bottom"]) < 4


def test_missing_label_is_found_at_the_dropped_box(tmp_path):
    data = _coco()
    dropped = _ann(data, 9)
    data["annotations"].remove(dropped)
    doc = _run(_write(tmp_path, data))
    x = _found(doc, "missing_label", image_id=1)
    assert x["score"] >= FLAG and doc["issues"][0]["id"] == x["id"]
    assert x["ann_id"] is None and _iou(x["bbox"], dropped["bbox"]) >= 0.8
    assert x["class_name"] == "circle (1)" and x["evidence"]["anchors"] >= 3


def test_spurious_label_is_found_on_background(tmp_path):
    data = _coco()
    data["annotations"].append(
        {
            "id": 100,
            "image_id": 4,
            "category_id": 2,
            "bbox": [120.0, 90.0, 40.0, 40.0],
            "area": 1600.0,
            "iscrowd": 0,
        }
    )
    doc = _run(_write(tmp_path, data))
    x = _found(doc, "spurious_label", ann_id=100)
    assert x["score"] >= FLAG and doc["issues"][0]["id"] == x["id"]
    assert x["evidence"]["support"] < 0.05
    assert doc["images"][0]["image_id"] == 4 and doc["images"][0]["score"] >= FLAG


def test_duplicate_label_is_found(tmp_path):
    data = _coco()
    twin = {**copy.deepcopy(_ann(data, 28)), "id": 101}
    twin["bbox"] = [twin["bbox"][0] + 2, twin["bbox"][1], twin["bbox"][2], twin["bbox"][3]]
    data["annotations"].append(twin)
    doc = _run(_write(tmp_path, data))
    x = _found(doc, "duplicate_label", ann_id=101)
    assert x["score"] >= 0.9 and x["evidence"]["duplicate_of"] == 28
    assert x["evidence"]["iou"] == pytest.approx((89 / 93), abs=1e-3)


def test_checkpoints_that_agree_raise_the_score(tmp_path):
    data = _coco()
    _ann(data, 4)["category_id"] = 2
    gt = _write(tmp_path, data)
    one = _found(_run(gt), "wrong_class", ann_id=4)
    two = _found(_run(gt, (BUNDLE, BUNDLE)), "wrong_class", ann_id=4)
    assert (one["checkpoints"], one["observed"], two["checkpoints"], two["observed"]) == (1, 1, 2, 2)
    assert two["score"] == pytest.approx(sc.persistent([one["score"]] * 2, 2), abs=1e-5)
    assert two["score"] > one["score"]


def test_scores_are_monotone_in_their_evidence():
    assert sc.wrong_class(0.05, 0.9) > sc.wrong_class(0.3, 0.9) > sc.wrong_class(0.3, 0.5)
    assert sc.bad_box(0.9, 0.3) > sc.bad_box(0.9, 0.6) > sc.bad_box(0.9, 0.85) == 0.0
    assert (
        sc.spurious_label(0.0)
        == 1.0
        > sc.spurious_label(0.002)
        > sc.spurious_label(0.02)
        > sc.spurious_label(0.3)
        == 0.0
    )
    assert sc.missing_label(0.9, 0.0) > sc.missing_label(0.9, 0.2) > sc.missing_label(0.5, 0.2)
    assert sc.persistent([0.6], 3) < sc.persistent([0.6, 0.6], 3) < sc.persistent([0.6] * 3, 3)


def _record(gts: list[dict], issues: list[dict]):
    from yolodbg.audit.evidence import BundleAudit

    return BundleAudit(
        source="b.pt",
        recipe="yolov8",
        images=[{"image_id": 1, "file_name": None, "gts": len(gts), "width": 640, "height": 480}],
        issues=issues,
        gts=gts,
    )


def test_spurious_scores_are_calibrated_by_how_often_the_model_misses_that_size():
    """Tiny GTs the model often misses make an unsupported tiny GT a weaker suspect than a large one."""
    from yolodbg.audit.merge import AuditAggregate

    def gt(k, side, support):
        return {
            "image_id": 1,
            "ann_id": k,
            "ann_key": k,
            "bbox": [0, 0, side, side],
            "evidence": {"support": support},
        }

    gts = [gt(k, 10, 0.0 if k < 20 else 0.9) for k in range(40)]  # tiny: half unsupported
    gts += [gt(100 + k, 80, 0.0 if k < 1 else 0.9) for k in range(40)]  # large: 1 of 40 unsupported
    issues = [
        {"type": "spurious_label", "score": 1.0, "image_id": 1, "ann_id": k, "ann_key": k, "bbox": g["bbox"],
         "evidence": {"support": 0.0}, "loss_share": None}
        for k, g in ((0, gts[0]), (100, gts[40]))
    ]  # fmt: skip
    agg = AuditAggregate()
    agg.add(_record(gts, issues))
    doc = agg.document()
    assert validate(doc, "yolodbg.audit/1") == []
    factor = doc["calibration"]["spurious_label"]["factor"]
    assert factor[3] == 1.0 and factor[0] == pytest.approx((1 / 40 + 0.02) / (0.5 + 0.02), abs=1e-4)
    by_ann = {x["ann_id"]: x for x in doc["issues"]}
    assert by_ann[100]["score"] == 1.0 and by_ann[0]["score"] == pytest.approx(factor[0], abs=1e-5)
    assert by_ann[0]["evidence"]["raw_score"] == 1.0
