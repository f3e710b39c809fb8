"""GT of images without scale/pad is mapped with the letterbox of the head's framework (or --letterbox).

The expected numbers are worked out by hand from each loader's arithmetic (odd image sizes, so
the rounding of every step shows).
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from yolodbg import bundle, groundtruth
from yolodbg.cli import main
from yolodbg.geometry import Letterbox

H0, W0 = 333, 517  # an original image, landscape, both sides odd


@pytest.mark.parametrize(
    ("input_hw", "want"),
    [
        # long side to 320, short side ceil(333 · 320/517 = 206.11) = 207; centred: round(113/2 - 0.1) = 56
        ((320, 320), (207 / 333, 320 / 517, 56.0, 0.0)),
        # ceil(412.22) = 413 rows; round(227/2 - 0.1) = 113
        ((640, 640), (413 / 333, 640 / 517, 113.0, 0.0)),
    ],
)
def test_ultralytics_val_loader(input_hw, want):
    assert Letterbox.ultralytics((H0, W0), input_hw) == pytest.approx(Letterbox(*want))


@pytest.mark.parametrize(
    ("orig", "input_hw", "imgsz", "want"),
    [
        # load_image truncates: int(206.11) = 206 rows; labels shifted by the unrounded (320 - 206) / 2
        ((H0, W0), (320, 320), None, (206 / 333, 320 / 517, 57.0, 0.0)),
        ((H0, W0), (640, 640), None, (412 / 333, 640 / 517, 114.0, 0.0)),
        # a rectangular batch 224 x 320 of imgsz 320: (224 - 206) / 2 = 9
        ((H0, W0), (224, 320), 320, (206 / 333, 320 / 517, 9.0, 0.0)),
        # 333 x 500 at 320: r = 0.64, int(213.12) = 213 rows, half padding 53.5 (the pixels start at row 53)
        ((H0, 500), (320, 320), None, (213 / 333, 320 / 500, 53.5, 0.0)),
        # a batch shape smaller than the resized image: r2 = 192/206 (scaleup=False only limits r2 to 1),
        # round(320 · r2 = 298.25) = 298 columns, (320 - 298) / 2 = 11 each side
        ((H0, W0), (192, 320), 320, (192 / 333, 320 * 192 / 206 / 517, 0.0, 11.0)),
    ],
)
def test_yolov5_val_loader(orig, input_hw, imgsz, want):
    assert Letterbox.yolov5(orig, input_hw, imgsz) == pytest.approx(Letterbox(*want))


@pytest.mark.parametrize(
    ("input_hw", "r"),
    [((320, 320), 320 / 517), ((640, 640), 640 / 517), ((256, 320), 320 / 517), ((160, 320), 160 / 333)],
)
def test_yolox_val_transform(input_hw, r):
    # one ratio min(H/h, W/w) for both axes, the image at the top left: no padding before it
    assert Letterbox.yolox((H0, W0), input_hw) == Letterbox(r, r, 0.0, 0.0)


def _yolox_bundle(tmp_path, images, size=320, nc=2):
    levels = [torch.zeros(1, 5 + nc, size // s, size // s) for s in (8, 16, 32)]
    return bundle.save(tmp_path / "x.pt", levels, head="yolox", input_size=[size, size], images=images)


def _coco(tmp_path, box):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H0, "width": W0}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 0, "area": 1.0}],
        "categories": [{"id": 1}, {"id": 2}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def _pixels(t):
    return t.boxes_xyxy()[0].tolist()


@pytest.mark.parametrize("size", [320, 640])
def test_a_yolox_bundle_gets_bottom_right_padding_by_default(tmp_path, size):
    # a box at the bottom right corner of the image: after YOLOX's ValTransform it ends at
    # (517 r, 333 r), the padding below and right of it; Ultralytics' letterbox would move it down
    box = [417.0, 233.0, 100.0, 100.0]
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0]}], size)
    b = bundle.load(path)
    t = groundtruth.load_targets(_coco(tmp_path, box), b, (size, size), 2)
    r = size / 517
    assert _pixels(t) == pytest.approx([417 * r, 233 * r, 517 * r, 333 * r], rel=1e-6)
    assert t.letterbox_doc() == {"mode": "yolox", "chosen_by": "head yolox", "images": [0]}


def test_letterbox_option_overrides_the_head_default(tmp_path):
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0]}])
    b = bundle.load(path, letterbox="ultralytics")
    t = groundtruth.load_targets(_coco(tmp_path, [0.0, 0.0, 517.0, 333.0]), b, (320, 320), 2)
    assert _pixels(t) == pytest.approx([0.0, 56.0, 320.0, 56.0 + 207.0], rel=1e-6)
    assert t.letterbox_doc()["chosen_by"] == "--letterbox"


def test_yolov5_labels_follow_the_unrounded_half_padding(tmp_path):
    levels = [torch.zeros(1, 3, 320 // s, 320 // s, 7) for s in (8, 16, 32)]
    path = bundle.save(
        tmp_path / "v5.pt",
        levels,
        head="yolov5",
        input_size=[320, 320],
        images=[{"image_id": 1, "orig_size": [333, 500]}],
    )
    doc = {
        "images": [{"id": 1, "height": 333, "width": 500}],
        "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 500, 333]}],
        "categories": [{"id": 1}, {"id": 2}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(doc))
    t = groundtruth.load_targets(ann, bundle.load(path), (320, 320), 2)
    assert _pixels(t) == pytest.approx([0.0, 53.5, 320.0, 53.5 + 213.0], rel=1e-6)
    assert t.letterbox_doc()["mode"] == "yolov5"


def test_recorded_scale_and_pad_win_and_nothing_is_reported(tmp_path):
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0], "scale": 0.5, "pad": [4, 6]}])
    t = groundtruth.load_targets(_coco(tmp_path, [10.0, 20.0, 30.0, 40.0]), bundle.load(path), (320, 320), 2)
    assert _pixels(t) == pytest.approx([11.0, 14.0, 26.0, 34.0])
    assert t.letterbox_doc() is None


def test_explain_json_records_the_letterbox_and_the_option_changes_it(tmp_path):
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0]}])
    ann = _coco(tmp_path, [100.0, 50.0, 60.0, 40.0])
    docs = {}
    for extra in ([], ["--letterbox", "ultralytics"]):
        res = CliRunner().invoke(main, ["explain", str(path), "--gt", str(ann), "--json", "-", *extra])
        assert res.exit_code == 0, res.output
        docs[tuple(extra)] = json.loads(res.stdout)
    assert docs[()]["input"]["letterbox"] == {"mode": "yolox", "chosen_by": "head yolox", "images": [0]}
    other = docs[("--letterbox", "ultralytics")]
    assert other["input"]["letterbox"]["mode"] == "ultralytics"
    y_default, y_other = docs[()]["gts"][0]["box_xyxy"][1], other["gts"][0]["box_xyxy"][1]
    assert y_other - y_default == pytest.approx(56.0 + 50 * (207 / 333 - 320 / 517), rel=1e-5)


def test_an_unknown_letterbox_is_refused(tmp_path):
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0]}])
    res = CliRunner().invoke(main, ["explain", str(path), "--letterbox", "mmdet"])
    assert res.exit_code == 2 and "--letterbox" in res.stderr


def test_scan_and_snapshot_record_the_letterbox(tmp_path):
    path = _yolox_bundle(tmp_path, [{"image_id": 1, "orig_size": [H0, W0]}])
    ann = _coco(tmp_path, [100.0, 50.0, 60.0, 40.0])
    res = CliRunner().invoke(main, ["scan", str(path), "--gt", str(ann), "--no-map", "--json", "-"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["letterbox"] == {"yolox": 1}
    snap = tmp_path / "s.json"
    res = CliRunner().invoke(
        main, ["snapshot", str(path), "--gt", str(ann), "-o", str(snap), "--letterbox", "yolov5"]
    )
    assert res.exit_code == 0, res.output
    inputs = json.loads(snap.read_text())["inputs"]
    assert inputs["letterbox"]["mode"] == "yolov5" and inputs["options"]["letterbox"] == "yolov5"
    res = CliRunner().invoke(main, ["check", str(snap)])  # replays with the recorded --letterbox
    assert res.exit_code == 0, res.output
