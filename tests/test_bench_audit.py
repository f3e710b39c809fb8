"""The audit benchmark's own arithmetic: the injected errors are what it claims, its AP is right.

``benchmarks/bench_audit.py`` needs cleanlab and Ultralytics only to run; its noise injection and its
metrics are plain numpy and are checked here on a hand-made label set.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_audit", ROOT / "benchmarks" / "bench_audit.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_audit"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _clean_coco(n_images: int = 40, seed: int = 0) -> dict:
    """Images of 320x240 with up to 8 non-overlapping boxes on a grid, category ids 1, 2, 3, 7."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 320, "height": 240})
        for cell in rng.permutation(12)[: int(rng.integers(0, 9))]:
            gx, gy = (cell % 4) * 80, (cell // 4) * 80
            w, h = float(rng.uniform(12, 60)), float(rng.uniform(12, 60))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([1, 2, 3, 7])),
                    "bbox": [gx + 5.0, gy + 5.0, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": str(c)} for c in (1, 2, 3, 7)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize("rate", [0.05, 0.15])
def test_injected_errors_are_what_they_claim(rate):
    clean = _clean_coco()
    noisy, injected = bench.inject(clean, rate, seed=3)
    n = len(clean["annotations"])
    counts = {k: sum(e["type"] == k for e in injected) for k in bench.ERROR_TYPES}
    assert counts == dict.fromkeys(bench.ERROR_TYPES, round(rate * n))
    clean_by_id = {a["id"]: a for a in clean["annotations"]}
    noisy_by_id = {a["id"]: a for a in noisy["annotations"]}
    touched = [e["ann_id"] for e in injected if e["type"] != "spurious"]
    assert len(touched) == len(set(touched))  # a clean box gets at most one error
    for e in injected:
        if e["type"] == "class_swap":
            assert noisy_by_id[e["ann_id"]]["category_id"] != clean_by_id[e["ann_id"]]["category_id"]
            assert noisy_by_id[e["ann_id"]]["bbox"] == clean_by_id[e["ann_id"]]["bbox"]
        elif e["type"] == "bad_box":
            a, b = (
                bench.xywh_to_xyxy(noisy_by_id[e["ann_id"]]["bbox"]),
                bench.xywh_to_xyxy(clean_by_id[e["ann_id"]]["bbox"]),
            )
            assert 0.2 <= bench.iou_matrix(a[None], b[None])[0, 0] <= 0.6
            assert a[0] >= 0 and a[1] >= 0 and a[2] <= 320 and a[3] <= 240
            assert e["bbox"] == noisy_by_id[e["ann_id"]]["bbox"]
        elif e["type"] == "dropped":
            assert e["ann_id"] not in noisy_by_id and e["bbox"] == clean_by_id[e["ann_id"]]["bbox"]
        else:
            assert e["ann_id"] not in clean_by_id
            true = [
                bench.xywh_to_xyxy(a["bbox"]) for a in clean["annotations"] if a["image_id"] == e["image_id"]
            ]
            if true:
                iou = bench.iou_matrix(bench.xywh_to_xyxy(e["bbox"])[None], np.array(true))
                assert iou.max() < 0.1
    untouched = set(clean_by_id) - set(touched)
    assert all(noisy_by_id[i] == clean_by_id[i] for i in untouched)


def test_injection_is_deterministic_per_seed():
    clean = _clean_coco()
    assert bench.inject(clean, 0.1, seed=1) == bench.inject(clean, 0.1, seed=1)
    assert bench.inject(clean, 0.1, seed=1)[1] != bench.inject(clean, 0.1, seed=2)[1]


def test_ranked_ap():
    assert bench.ranked_ap(np.array([0.9, 0.8, 0.1]), np.array([True, True, False]), 2) == 1.0
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert bench.ranked_ap(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2) == pytest.approx(
        5 / 6
    )
    # a positive never ranked costs recall
    assert bench.ranked_ap(np.array([0.9]), np.array([True]), 2) == 0.5
    # tied scores form one threshold: precision 1/2 at recall 1
    assert bench.ranked_ap(np.array([0.5, 0.5]), np.array([False, True]), 1) == 0.5
    assert np.isnan(bench.ranked_ap(np.array([0.5]), np.array([False]), 0))


def test_ranked_ap_matches_sklearn_when_everything_is_ranked():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    scores, positive = rng.integers(0, 20, 200) / 20, rng.random(200) < 0.2
    ours = bench.ranked_ap(scores, positive, int(positive.sum()))
    assert ours == pytest.approx(sklearn.average_precision_score(positive, scores))


def test_a_dropped_box_is_found_once():
    dropped = [{"type": "dropped", "image_id": 1, "ann_id": 5, "bbox": [10.0, 10.0, 20.0, 20.0]}]
    suspects = [
        (0.5, 1, np.array([11.0, 11.0, 31.0, 31.0])),  # IoU 0.82: the match, though second by score
        (0.9, 1, np.array([12.0, 10.0, 32.0, 30.0])),  # IoU 0.82 too, but first by score: it matches
        (0.7, 2, np.array([10.0, 10.0, 30.0, 30.0])),  # another image
        (0.6, 1, np.array([25.0, 25.0, 45.0, 45.0])),  # IoU 0.14
    ]
    assert bench.match_suspects(suspects, dropped).tolist() == [False, True, False, False]
