"""scan: bundles that repeat image ids (two checkpoints' bundles in one folder) are flagged, not counted twice."""

from __future__ import annotations

import json

import pytest
from test_scan import _write

from yolodbg.scan.run import ScanJob, scan
from yolodbg.validate import validate


def _counted(doc: dict) -> str:
    """Everything a repeated bundle must not change: sums over GTs, classes, sizes, levels and mAP."""
    keys = (
        "bundles",
        "images",
        "num_gt",
        "num_pos",
        "classes",
        "sizes",
        "levels",
        "loss_sum",
        "coco",
        "terms",
    )
    return json.dumps({k: doc[k] for k in keys}, sort_keys=True, default=str)


@pytest.mark.parametrize("evaluate", [False, True])
def test_a_bundle_repeating_image_ids_is_flagged_and_left_out(tmp_path, evaluate):
    first = _write(tmp_path, n=2, bs=2, name="epoch1_")  # images 0, 1 and 100, 101
    again = _write(tmp_path / "later", n=1, bs=2, name="epoch2_")  # images 0, 1 again
    alone = scan(first, ScanJob(evaluate=evaluate), workers=1).summary()
    both = scan([*first, *again], ScanJob(evaluate=evaluate), workers=1).summary()
    assert _counted(both) == _counted(alone)
    assert both["num_gt"] == alone["num_gt"] > 0 and both["bundles"] == 2
    assert both["duplicates"] == [
        {"bundle": str(again[0]), "repeated_images": 2, "images": ["0", "1"], "first_in": [str(first[0])]}
    ]
    assert [w for w in both["warnings"] if "repeats image id(s) 0, 1" in w and str(again[0]) in w]
    assert alone["duplicates"] == [] and validate(both, "yolodbg.scan/1") == []


def test_bundles_with_distinct_image_ids_all_count(tmp_path):
    paths = _write(tmp_path, n=3, bs=2)  # images 0, 1 / 100, 101 / 200, 201
    doc = scan(paths, ScanJob(evaluate=False), workers=1).summary()
    assert doc["bundles"] == 3 and doc["images"] == 6 and doc["duplicates"] == []


def test_cli_warns_about_the_repeat_and_exits_0(tmp_path):
    from click.testing import CliRunner

    from yolodbg.cli import main

    _write(tmp_path / "run", n=1, bs=2, name="epoch1_")
    _write(tmp_path / "run", n=1, bs=2, name="epoch2_")  # the same two images, another checkpoint
    res = CliRunner().invoke(
        main, ["scan", str(tmp_path / "run"), "--no-map", "--workers", "1"], env={"COLUMNS": "80"}
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "bundles · images 1 · 2" in text
    assert (
        "warning: " in text and "epoch2_0.pt: repeats image id(s) 0, 1 of" in text and "epoch1_0.pt" in text
    )
