"""The shipped sample data: exact replays, valid reports, and committed regression snapshots.

``tests/snapshots/*.json`` were written by ``yolodbg snapshot`` on ``sample_data/``; any change
to a number any recipe computes on them fails here. Accept an intended change with
``python tests/test_sample_data.py --update`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_valid

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.explain import explain

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"

# snapshot name -> (bundle, use the COCO file?, recipes)
MANIFEST = {
    "yolov8n_val": (
        "yolov8n_val.pt",
        True,
        ["yolov8", "yolov8:box=giou,cls=varifocal", "yolov8:assigner.topk=13"],
    ),
    "yolov8n_train_step": ("yolov8n_train_step.pt", False, ["yolov8"]),
    "yolo26n_val": ("yolo26n_val.pt", True, ["yolo26", "yolo26:epoch=50", "yolov8:branch=one2many"]),
    "yolox_val": ("yolox_val.pt", True, ["yolox", "yolox-main"]),
    "yolov1_val": ("yolov1_val.pt", True, ["yolov1"]),
    "yolov5n_val": ("yolov5n_val.pt", True, ["yolov5"]),
}


def _args(name: str) -> list[str]:
    """Paths relative to the repository root, as the snapshots record them (run with cwd = ROOT)."""
    file, coco, _ = MANIFEST[name]
    return [f"sample_data/{file}", *(["--gt", "sample_data/coco_val.json"] if coco else [])]


def test_training_step_replays_the_trainers_numbers():
    b = bundle.load(SAMPLE / "yolov8n_train_step.pt")
    ex = explain(b)
    logged = b.meta["loss_items"]
    # the trainer logged these on its own CPU; another CPU's kernels round the sums differently, so the
    # golden tolerance (relative 1e-5, docs/testing.md) rather than the bit
    for term, key in (("box", "box_loss"), ("cls", "cls_loss"), ("dfl", "dfl_loss")):
        assert ex.result.terms[term] == pytest.approx(logged[key], rel=1e-5)
    assert ex.result.objective == pytest.approx(sum(b.meta["loss"]), rel=1e-5)
    assert ex.breakdown.violations == []


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sample_explain_json_is_valid(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "x.json"
    res = CliRunner().invoke(main, ["explain", *_args(name), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert_valid(json.loads(out.read_text()), "yolodbg.explain/1")
    assert json.loads(out.read_text())["gts"]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sample_snapshot_has_not_drifted(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    snap = SNAPSHOTS / f"{name}.json"
    assert snap.exists(), f"missing {snap}; write it with: python tests/test_sample_data.py --update"
    res = CliRunner().invoke(main, ["check", str(snap), *_args(name)])
    assert res.exit_code == 0, res.output


def _update() -> None:
    import os

    os.chdir(ROOT)
    runner = CliRunner()
    for name, (_, _, recipes) in MANIFEST.items():
        args = ["snapshot", *_args(name), "-o", str(SNAPSHOTS / f"{name}.json"), "--update"]
        for r in recipes:
            args += ["-r", r]
        res = runner.invoke(main, args)
        print(res.output.strip())
        assert res.exit_code == 0


if __name__ == "__main__":
    if "--update" in sys.argv:
        _update()


def test_predictions_on_the_crowd_region_are_not_missing_labels(monkeypatch):
    # val_000.jpg has an iscrowd box over a cluster of tiny crosses; the model fires there with no GT
    monkeypatch.chdir(ROOT)
    ex = explain(bundle.load("sample_data/yolov8n_val.pt"), "sample_data/coco_val.json", top=10)
    crowd = [ig for ig in ex.targets.ignored if ig.reason == "iscrowd"]
    assert len(crowd) == 1
    on_crowd = [
        n for n in ex.breakdown.negatives if n.image_index == crowd[0].image_index and n.best_iou < 0.1
    ]
    assert on_crowd and all(n.hint == "iscrowd_region" for n in on_crowd)
