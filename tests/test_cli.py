"""The command line: reports, JSON on stdout, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output

from yolodbg import bundle
from yolodbg.cli import main

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def preds(tmp_path):
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2)
    images = [{"image_id": 7, "file_name": "a.jpg"}, {"image_id": 9, "file_name": "b.jpg"}]
    return bundle.save(tmp_path / "p.pt", out, input_size=[128, 96], targets=batch(ROWS), images=images)


def test_explain_report(runner, preds):
    res = runner.invoke(main, ["explain", str(preds)], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    for text in (
        "Summary",
        "objective",
        "box",
        "cls",
        "dfl",
        "Ground-truth boxes",
        "Background anchors",
        "3 GTs",
    ):
        assert text in res.output


def test_json_to_stdout_is_the_only_output(runner, preds):
    res = runner.invoke(main, ["explain", str(preds), "--json", "-"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["schema"] == "yolodbg.explain/1" and doc["batch_size"] == 2 and len(doc["gts"]) == 3
    assert [im["image_id"] for im in doc["images"]] == [7, 9]


def test_json_file_and_focus_image(runner, preds, tmp_path):
    target = tmp_path / "out" / "r.json"
    res = runner.invoke(
        main,
        ["explain", str(preds), "--json", str(target), "--image", "9"],
        env={"COLUMNS": "160", "NO_COLOR": "1"},
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(target.read_text())
    assert doc["focus_image"] == 1 and len(doc["gts"]) == 3  # the JSON keeps every GT


def test_recipe_variant_changes_the_numbers(runner, preds):
    base = json.loads(runner.invoke(main, ["explain", str(preds), "--json", "-"]).stdout)
    varied = json.loads(
        runner.invoke(main, ["explain", str(preds), "--json", "-", "-r", "yolo11:gain.cls=1.0"]).stdout
    )
    assert varied["terms"]["cls"] == pytest.approx(2 * base["terms"]["cls"], rel=1e-6)
    assert varied["recipe"]["params"]["gain.cls"] == 1.0


def test_coco_ground_truth(runner, preds, coco_file):
    path = coco_file([{"id": 3, "image_id": 7, "category_id": 3, "bbox": [20, 10, 60, 50]}])
    res = runner.invoke(main, ["explain", str(preds), "--gt", str(path), "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(g["ann_id"], g["class"], g["category_id"]) for g in doc["gts"]] == [(3, 1, 3)]


def _one_line_error(res, *needles):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_file(runner, tmp_path):
    _one_line_error(runner.invoke(main, ["explain", str(tmp_path / "nope.pt")]), "nope.pt", "no such file")


def test_not_a_bundle(runner, tmp_path):
    p = tmp_path / "x.pt"
    p.write_text("hello")
    _one_line_error(runner.invoke(main, ["explain", str(p)]), "x.pt", "not a torch.save file")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/yolodbg_cli_pwned",))


def test_pickle_that_runs_code(runner, tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"yolodbg": 1, "outputs": _Evil()}, p, pickle_module=pickle)
    _one_line_error(runner.invoke(main, ["explain", str(p)]), "evil.pt", "refused to load")
    assert not os.path.exists("/tmp/yolodbg_cli_pwned")


def test_wrong_shapes(runner, tmp_path):
    out = ultra_output()
    out["boxes"] = out["boxes"][:, :63]
    torch.save(out, tmp_path / "w.pt")
    _one_line_error(runner.invoke(main, ["explain", str(tmp_path / "w.pt")]), "outputs.boxes has 63 channels")


def test_nc_mismatch_with_the_annotation_file(runner, preds, coco_file):
    path = coco_file([], categories=(1, 2, 3, 4, 5))
    _one_line_error(
        runner.invoke(main, ["explain", str(preds), "--gt", str(path)]), "5 categories", "3 classes"
    )


def test_image_ids_absent_from_the_json(runner, preds, coco_file, tmp_path):
    path = coco_file([], images=[{"id": 1, "file_name": "z.jpg", "width": 10, "height": 10}])
    _one_line_error(
        runner.invoke(main, ["explain", str(preds), "--gt", str(path)]), "image id '7'", "--image-ids"
    )


def test_bare_bundle_needs_image_ids_for_coco(runner, tmp_path, coco_file):
    torch.save(ultra_output(nc=3, size=(128, 128)), tmp_path / "bare.pt")
    path = coco_file([{"id": 1, "image_id": 9, "category_id": 1, "bbox": [10, 10, 50, 40]}])
    _one_line_error(
        runner.invoke(main, ["explain", str(tmp_path / "bare.pt"), "--gt", str(path)]), "--image-ids"
    )
    res = runner.invoke(
        main, ["explain", str(tmp_path / "bare.pt"), "--gt", str(path), "--image-ids", "7,9", "--json", "-"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["gts"][0]["image_index"] == 1


def test_bare_bundle_without_gt(runner, tmp_path):
    torch.save(ultra_output(), tmp_path / "bare.pt")
    _one_line_error(runner.invoke(main, ["explain", str(tmp_path / "bare.pt")]), "no ground truth", "--gt")


def test_empty_annotations_run(runner, preds, coco_file):
    res = runner.invoke(main, ["explain", str(preds), "--gt", str(coco_file([])), "--json", "-"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["gts"] == [] and doc["terms"]["box"] == 0.0 and doc["background"]["terms"]["cls"] > 0


def test_degenerate_boxes_warn(runner, preds, coco_file):
    path = coco_file([{"id": 5, "image_id": 7, "category_id": 1, "bbox": [10, 10, 0, 0]}])
    res = runner.invoke(main, ["explain", str(preds), "--gt", str(path), "--json", "-"])
    assert res.exit_code == 0
    assert any("annotation 5" in w for w in json.loads(res.stdout)["warnings"])


def test_unknown_recipe_suggests(runner, preds):
    _one_line_error(runner.invoke(main, ["explain", str(preds), "-r", "yolov9"]), "unknown recipe", "yolov8")
    _one_line_error(
        runner.invoke(main, ["explain", str(preds), "-r", "yolov8:assigner.topK=3"]), "assigner.topk"
    )
    _one_line_error(
        runner.invoke(main, ["explain", str(preds), "-r", "yolov8:assigner.topk=x"]), "not a valid int"
    )


def test_unknown_image(runner, preds):
    _one_line_error(runner.invoke(main, ["explain", str(preds), "--image", "12345"]), "--image 12345")


def test_debug_shows_the_traceback(runner, tmp_path):
    res = runner.invoke(main, ["explain", str(tmp_path / "nope.pt"), "--debug"])
    assert res.exit_code != 0 and res.exception is not None and not isinstance(res.exception, SystemExit)


def test_nonfinite_exits_1_with_the_location(runner, tmp_path):
    out = ultra_output(bs=2, size=(64, 64), nc=2)
    out["boxes"][1, 3, 17] = float("nan")
    p = bundle.save(tmp_path / "nan.pt", out, targets=batch([(1, 0, 0.5, 0.5, 0.5, 0.5)]))
    res = runner.invoke(main, ["explain", str(p)], env={"COLUMNS": "160"})
    assert res.exit_code == 1
    assert "image 1" in res.stderr and "anchor 17" in res.stderr


def test_recipes_listing(runner):
    res = runner.invoke(main, ["recipes"], env={"COLUMNS": "160"})
    assert res.exit_code == 0 and "yolov8" in res.output and "yolo11" in res.output
    res = runner.invoke(main, ["recipes", "yolo11"], env={"COLUMNS": "160"})
    assert "assigner.topk" in res.output and "10" in res.output


def test_help_teaches_by_example(runner):
    for args in (["--help"], ["explain", "--help"], ["recipes", "--help"]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0 and "Example" in res.output
