"""yolodbg scan: aggregates equal the sum of per-bundle explain results; buckets, ceiling, interrupt, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.explain import explain
from yolodbg.recipes import get_recipe
from yolodbg.recipes.base import Recipe
from yolodbg.scan.records import size_bucket
from yolodbg.scan.run import ScanJob, expand, scan

ROWS = [  # image, class, cx, cy, w, h (normalised input)
    [0, 0, 0.5, 0.5, 0.3, 0.3],
    [0, 1, 0.2, 0.25, 0.06, 0.05],
    [0, 1, 0.2, 0.25, 0.06, 0.05],  # a duplicate label: loses every anchor to its twin
    [1, 2, 0.7, 0.6, 0.5, 0.4],
    [1, 0, 0.9, 0.9, 0.15, 0.15],
    # image 2 has no object
]


def _write(tmp_path, n=3, bs=3, size=(96, 128), epoch=None, rows=ROWS, name="b"):
    paths = []
    for k in range(n):
        out = ultra_output(bs=bs, size=size, nc=3, seed=k)
        images = [
            {"image_id": 100 * k + i, "orig_size": [size[0] * 2, size[1] * 2], "scale": 0.5, "pad": [0, 0]}
            for i in range(bs)
        ]
        meta = {} if epoch is None else {"epoch": epoch}
        paths.append(
            bundle.save(
                tmp_path / f"{name}{k}.pt",
                out,
                input_size=list(size),
                targets=batch(rows),
                images=images,
                meta=meta,
            )
        )
    return paths


def _bucket_by_hand(box_xyxy, scale=0.5):
    x1, y1, x2, y2 = box_xyxy
    return size_bucket(((x2 - x1) / scale) * ((y2 - y1) / scale))


def test_size_buckets_use_coco_limits():
    assert [size_bucket(a) for a in (0.0, 1023.9, 1024.0, 9215.9, 9216.0, 1e9)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]


def test_scan_aggregates_equal_the_sum_of_explain_results(tmp_path):
    paths = _write(tmp_path)
    agg = scan(paths, ScanJob(evaluate=False), top=50)
    doc = agg.summary()
    exs = [explain(bundle.load(p), top=0) for p in paths]
    names = list(exs[0].result.terms)
    assert names and doc["bundles"] == 3 and doc["images"] == 9
    for t in names:
        assert doc["loss_sum"]["terms"][t] == pytest.approx(sum(e.result.terms[t] for e in exs), rel=1e-12)
        assert doc["terms"][t] == pytest.approx(sum(e.result.terms[t] for e in exs) / 3, rel=1e-12)
        assert doc["background"]["terms"][t] == pytest.approx(
            sum(e.breakdown.background[t] for e in exs), rel=1e-12
        )
        # levels split the same sums by stride: Σ levels (fg + bg) == Σ terms
        by_level = sum(lv["fg"][t] + lv["bg"][t] for lv in doc["levels"])
        assert by_level == pytest.approx(
            doc["loss_sum"]["terms"][t], rel=1e-6
        )  # ledger (float64) vs logged (float32)
    gts = [g for e in exs for g in e.breakdown.gts]
    assert doc["num_gt"] == len(gts) == 15
    assert (
        doc["num_pos"] == sum(e.breakdown.num_pos for e in exs) == sum(lv["num_pos"] for lv in doc["levels"])
    )
    assert doc["classes"] and doc["sizes"], "no class or size rows to check"
    for row in doc["classes"]:
        mine = [g for g in gts if g.cls == row["class"]]
        assert row["num_gt"] == len(mine)
        assert row["num_pos"] == sum(g.num_pos for g in mine)
        assert row["orphans"] == sum(g.num_pos == 0 for g in mine)
        assert row["loss"] == pytest.approx(sum(g.total for g in mine), rel=1e-12)
        for t in names:
            assert row["terms"][t] == pytest.approx(sum(g.terms[t] for g in mine), rel=1e-12, abs=1e-15)
    for row in doc["sizes"]:
        mine = [g for g in gts if _bucket_by_hand(g.box_xyxy) == row["bucket"]]
        assert row["num_gt"] == len(mine), row["bucket"]
        assert row["loss"] == pytest.approx(sum(g.total for g in mine), rel=1e-12, abs=1e-15)
    # classes + background == everything
    assert sum(r["loss"] for r in doc["classes"]) + doc["background"]["loss"] == pytest.approx(
        doc["loss_sum"]["total"], rel=1e-6
    )
    top = doc["top_images"][0]
    best = max((im for e in exs for im in e.breakdown.images), key=lambda im: im.total)
    assert top["total"] == pytest.approx(best.total)
    assert doc["orphans"]["count"] == sum(g.num_pos == 0 for g in gts) >= 3  # the three duplicates
    assert doc["orphans"]["by_reason"].get("lost_conflict", 0) >= 3
    assert doc["violations"] == [] and doc["failed"] == []


def test_original_pixels_decide_the_bucket(tmp_path):
    # 0.2 × 96 = 19.2 px high, 0.15 × 128 = 19.2 px wide in the input: 369 px² (small) there, but the
    # bundle says scale 0.5, so the original box is 38.4 × 38.4 = 1475 px²: medium
    paths = _write(tmp_path, n=1, rows=[[0, 0, 0.5, 0.5, 0.15, 0.2]])
    doc = scan(paths, ScanJob(evaluate=False)).summary()
    assert {r["bucket"]: r["num_gt"] for r in doc["sizes"]} == {"small": 0, "medium": 1, "large": 0}


def test_recall_ceiling_hooks_agree_on_unreachable_boxes(tmp_path):
    # without the small-box floor, a 2 px box at (32, 32) holds no anchor centre: they sit at 4 + 8k
    # (stride 8), 8 + 16k (stride 16) and 16 + 32k (stride 32), and none of those lies in (31, 33)
    rows = [[0, 0, 0.5, 0.5, 0.3, 0.3], [0, 1, 32.0 / 128, 32.0 / 96, 2.0 / 128, 2.0 / 96]]
    paths = _write(tmp_path, n=1, rows=rows)
    ex = explain(bundle.load(paths[0]), recipe=get_recipe("yolov8:assigner.min_side=0"), top=0)
    num_pos = torch.tensor([g.num_pos for g in ex.breakdown.gts])
    geo = ex.recipe.reachable(ex.result, ex.targets, num_pos)  # the TAL recipes' own: step A
    by_reason = Recipe.reachable(ex.recipe, ex.result, ex.targets, num_pos)  # the base class's default
    assert geo.tolist() == by_reason.tolist() == [True, False]
    # the replay's own step A (kept on the result) equals the geometry worked out afresh
    assert ex.result.gt_reachable is not None
    recomputed = ex.recipe.reachable(dataclasses.replace(ex.result, gt_reachable=None), ex.targets, num_pos)
    assert recomputed.tolist() == geo.tolist()
    assert ex.result.gt_reasons[1].code == "no_anchor_inside"
    doc = scan(paths, ScanJob(recipe="yolov8:assigner.min_side=0", evaluate=False)).summary()
    assert doc["recall_ceiling"]["value"] == pytest.approx(0.5)
    assert doc["recall_ceiling"]["hook"] == "tal_reachable"
    # with the default floor (stride 16) the same box reaches anchors: ceiling 1
    assert scan(paths, ScanJob(evaluate=False)).summary()["recall_ceiling"]["value"] == 1.0


def test_empty_batches_scan_cleanly(tmp_path):
    paths = _write(tmp_path, n=2, rows=[])
    doc = scan(paths, ScanJob()).summary()
    assert doc["num_gt"] == 0 and doc["recall_ceiling"]["value"] is None
    assert doc["background"]["share"] == pytest.approx(1.0)
    assert doc["sizes"] and all(r["num_gt"] == 0 for r in doc["sizes"])


def test_ctrl_c_keeps_what_was_aggregated(tmp_path):
    paths = _write(tmp_path, n=4, bs=1, rows=[[0, 0, 0.5, 0.5, 0.3, 0.3]])
    seen = []

    def first_press(rec):  # the handler only sets a flag: the scan stops after this bundle
        seen.append(rec)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    agg = scan(paths, ScanJob(evaluate=False), on_record=first_press)
    assert agg.interrupted and agg.bundles == 2 and agg.summary()["interrupted"]

    def hard_stop(rec):
        raise KeyboardInterrupt

    agg = scan(paths, ScanJob(evaluate=False), on_record=hard_stop)
    assert agg.interrupted and agg.bundles == 1


def test_workers_give_the_same_report(tmp_path):
    paths = _write(tmp_path, n=3, bs=2)
    one = scan(paths, ScanJob(), workers=1).summary()
    two = scan(paths, ScanJob(), workers=2).summary()
    assert json.dumps(one, sort_keys=True, default=str) == json.dumps(two, sort_keys=True, default=str)


def test_report_does_not_depend_on_the_callers_torch_threads(tmp_path):
    """Every bundle runs on one torch thread (sums split by thread count would move the last digits),
    and the caller gets its own thread count back."""
    paths = _write(tmp_path, n=2, bs=2)
    before = torch.get_num_threads()
    try:
        reports = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            reports.append(
                json.dumps(scan(paths, ScanJob(), workers=1).summary(), sort_keys=True, default=str)
            )
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert reports[0] == reports[1] == reports[2]


def test_expand_folders_globs_and_natural_order(tmp_path):
    for name in ("b10.pt", "b2.pt", "b1.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand(tmp_path)] == ["b1.pt", "b2.pt", "b10.pt"]
    assert [p.name for p in expand(str(tmp_path / "b1*.pt"))] == ["b1.pt", "b10.pt"]


def test_cli_scan_json_rows_and_exit_codes(tmp_path):
    paths = _write(tmp_path, n=2)
    runner = CliRunner()
    rows = tmp_path / "gts.jsonl"
    res = runner.invoke(main, ["scan", str(tmp_path), "--json", "-", "--rows", str(rows), "--top", "3"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "yolodbg.scan/1" and doc["bundles"] == 2
    assert doc["coco"] is not None and set(doc["coco"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    lines = [json.loads(ln) for ln in rows.read_text().splitlines()]
    assert len(lines) == doc["num_gt"] == 10
    assert sum(r["total"] for r in lines) == pytest.approx(sum(c["loss"] for c in doc["classes"]))
    assert all(isinstance(r["detected"], bool) for r in lines)
    assert {r["bucket"] for r in lines} <= {"small", "medium", "large"}
    # the console report
    res = runner.invoke(main, ["scan", str(paths[0]), "--no-map"])
    assert res.exit_code == 0 and "Classes" in res.output and "recall ceiling" in res.output
    # a broken file among good ones: reported, the rest still scanned, exit 2
    (tmp_path / "zz_bad.pt").write_bytes(b"not a bundle")
    res = runner.invoke(main, ["scan", str(tmp_path), "--no-map", "--json", "-"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["bundles"] == 2 and len(doc["failed"]) == 1 and "zz_bad.pt" in doc["failed"][0]
    assert doc["failed"][0].count("zz_bad.pt") == 1  # named once, not "path: path: ..."
    res = runner.invoke(main, ["scan", str(tmp_path / "nothing*.pt")])
    assert res.exit_code == 2 and "no such file" in res.output


def test_bundles_of_another_recipe_are_named_not_added(tmp_path):
    """Terms of two recipes do not add up: the first bundle's recipe wins, the others fail by name."""
    paths = _write(tmp_path, n=1)
    other = tmp_path / "v5.pt"
    levels = [torch.randn(3, 3, s, s, 8) for s in (12, 6, 3)]  # YOLOv5 head, 3 classes, 96×96 input
    bundle.save(other, levels, head="yolov5", input_size=[96, 96], targets=batch(ROWS))
    agg = scan([*paths, other], ScanJob(evaluate=False))
    doc = agg.summary()
    assert doc["bundles"] == 1 and doc["recipe"].startswith("yolov8")
    assert len(doc["failed"]) == 1 and "v5.pt" in doc["failed"][0] and "yolov5" in doc["failed"][0]
    assert list(doc["terms"]) == ["box", "cls", "dfl"]
    res = CliRunner().invoke(main, ["scan", *map(str, paths), str(other), "--no-map"])
    assert res.exit_code == 2 and "one model at a time" in res.output


def test_gt_from_a_coco_json_maps_ann_ids_and_evaluates(tmp_path, coco_file):
    # two 200×100 images (ids 7, 9) letterboxed into 128×128 by the Ultralytics rule
    path = coco_file(
        [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [20, 20, 60, 40]},
            {"id": 2, "image_id": 9, "category_id": 5, "bbox": [120, 10, 10, 8]},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},
        ]
    )
    out = ultra_output(bs=2, size=(128, 128), nc=3)
    p = bundle.save(tmp_path / "c.pt", out, input_size=[128, 128], images=[{"image_id": 7}, {"image_id": 9}])
    doc = scan([p], ScanJob(gt=str(path))).summary()
    assert doc["num_gt"] == 2 and doc["coco"]["num_images"] == 2
    listed = {g["ann_id"]: g for g in doc["top_gts"]}
    assert set(listed) == {1, 2}
    # ann 1 is 60×40 px in its original image (2400 px²: medium), ann 2 is 10×8 (80 px²: small)
    assert listed[1]["bucket"] == "medium" and listed[2]["bucket"] == "small"
    assert listed[1]["box_orig_xyxy"] == pytest.approx([20, 20, 80, 60], abs=1e-3)
    assert math.isnan(doc["coco"]["APl"])  # no large GT


def test_auto_workers_one_per_core_at_most_one_per_bundle():
    from yolodbg.scan.run import auto_workers

    assert auto_workers(3, 1) == 1  # asked for: capped at the bundles
    assert auto_workers(100000, 100000) <= (os.cpu_count() or 1)  # ... and at the CPU cores
    assert auto_workers(0, 1) == 1  # one bundle: no pool
    assert 1 <= auto_workers(0, 1000) <= (os.cpu_count() or 1)


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("trim", pad))
        return 1

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1


def test_untuned_heap_is_trimmed_every_few_bundles():
    from yolodbg.scan.run import TRIM_EVERY, _Allocator

    alloc = _Allocator()
    alloc._libc = fake = _FakeLibc()
    for _ in range(2 * TRIM_EVERY + 3):
        alloc.after_bundle()
    assert fake.calls == [("trim", 0), ("trim", 0)]


def test_tuned_heap_keeps_its_pages_and_pool_workers_never_trim():
    from yolodbg.scan.run import MMAP_THRESHOLD, TRIM_EVERY, TRIM_THRESHOLD, _Allocator

    alloc = _Allocator()
    alloc._libc = fake = _FakeLibc()
    alloc.tune()  # the aggregating process: thresholds fixed, still trims
    for _ in range(TRIM_EVERY):
        alloc.after_bundle()
    assert alloc.tuned
    assert fake.calls == [("mallopt", -3, MMAP_THRESHOLD), ("mallopt", -1, TRIM_THRESHOLD), ("trim", 0)]
    fake.calls.clear()
    alloc.tune(trim_every=0)  # a pool worker: thresholds already fixed, never trims
    for _ in range(2 * TRIM_EVERY):
        alloc.after_bundle()
    assert fake.calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_takes_on_the_real_allocator():
    code = "from yolodbg.scan.run import allocator; allocator.tune(); print(allocator.tuned)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
