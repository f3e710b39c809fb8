"""Ground truth: COCO and YOLO txt mapped into the network input, bundle targets, bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import ultra_output

from yolodbg import bundle, groundtruth
from yolodbg.errors import GroundTruthError

IMAGES = [{"image_id": 7, "file_name": "a.jpg"}, {"image_id": 9, "file_name": "b.jpg"}]


def _bundle(images=IMAGES, **extra):
    return bundle.from_object({"yolodbg": 1, "outputs": ultra_output(nc=3), "images": images, **extra})


def test_coco_box_is_letterboxed_and_normalised(coco_file):
    # image 200×100 into 128×128: r = 0.64, pad_top = 32; bbox [50, 25, 100, 50] → xyxy (32, 48, 96, 80)
    path = coco_file([{"id": 11, "image_id": 7, "category_id": 5, "bbox": [50, 25, 100, 50], "iscrowd": 0}])
    t = groundtruth.from_coco(path, _bundle(), (128, 128), nc=3)
    assert t.batch_idx.tolist() == [0] and t.cls.tolist() == [2]  # sorted ids 1, 3, 5 → class 2
    assert torch.allclose(t.bboxes, torch.tensor([[0.5, 0.5, 0.5, 0.25]]))
    assert t.ann_ids == (11,)
    assert torch.allclose(t.boxes_xyxy(), torch.tensor([[32.0, 48.0, 96.0, 80.0]], dtype=torch.float64))


def test_bundle_scale_and_pad_win_over_the_json_size(coco_file):
    path = coco_file([{"id": 1, "image_id": 9, "category_id": 1, "bbox": [10, 10, 20, 20]}])
    images = [IMAGES[0], {"image_id": 9, "scale": 0.5, "pad": [4, 2]}]
    t = groundtruth.from_coco(path, _bundle(images), (128, 128), nc=3)
    # x1 = 10·0.5 + 2 = 7, y1 = 10·0.5 + 4 = 9, size 10 → centre (12, 14)
    assert t.batch_idx.tolist() == [1]
    assert torch.allclose(t.bboxes * 128, torch.tensor([[12.0, 14.0, 10.0, 10.0]]))


def test_category_ids_of_the_bundle_define_the_classes(coco_file):
    path = coco_file([{"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 10, 20, 20]}])
    t = groundtruth.from_coco(path, _bundle(category_ids=[5, 1, 3]), (128, 128), nc=3)
    assert t.cls.tolist() == [0]


def test_crowd_boxes_are_ignored_and_reported(coco_file):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 1},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [100, 10, 20, 20], "iscrowd": 0},
    ]
    t = groundtruth.from_coco(coco_file(anns), _bundle(), (128, 128), nc=3)
    assert t.ann_ids == (2,)
    assert [(i.ann_id, i.reason) for i in t.ignored] == [(1, "iscrowd")]


def test_degenerate_and_outside_boxes_warn_and_are_left_out(coco_file):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 0, 20]},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [500, 500, 20, 20]},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [190, 90, 20, 20]},  # sticks out: clipped
    ]
    t = groundtruth.from_coco(coco_file(anns), _bundle(), (128, 128), nc=3)
    assert t.ann_ids == (3,)
    assert {i.reason for i in t.ignored} == {"degenerate", "outside_image"}
    assert any("clipped" in w for w in t.warnings)
    assert float(t.boxes_xyxy()[0, 2]) == pytest.approx(128.0)


def test_empty_annotations_give_no_rows(coco_file):
    t = groundtruth.from_coco(coco_file([]), _bundle(), (128, 128), nc=3)
    assert len(t) == 0 and t.bboxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("anns", "images", "match"),
    [
        (
            [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 3]}],
            IMAGES,
            r"annotations\[0\]\.bbox has 3 numbers",
        ),
        ([], [{"image_id": 99}, {"image_id": 7}], "image id '99'"),
        (
            [{"id": 4, "image_id": 7, "category_id": 8, "bbox": [1, 2, 3, 4]}],
            IMAGES,
            "annotation 4 has category_id 8",
        ),
        ([], [{}, {}], "--image-ids"),
    ],
)
def test_bad_coco_input_names_the_field(coco_file, anns, images, match):
    with pytest.raises(GroundTruthError, match=match):
        groundtruth.from_coco(coco_file(anns), _bundle(images), (128, 128), nc=3)


def test_more_categories_than_classes(coco_file):
    path = coco_file([], categories=(1, 2, 3, 4))
    with pytest.raises(GroundTruthError, match=r"4 categories .* 3 classes"):
        groundtruth.from_coco(path, _bundle(), (128, 128), nc=3)


def test_not_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{nope")
    with pytest.raises(GroundTruthError, match="not valid JSON"):
        groundtruth.from_coco(p, _bundle(), (128, 128), nc=3)


def test_yolo_labels_folder(tmp_path):
    (tmp_path / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n\n")
    images = [
        {"file_name": "a.jpg", "orig_size": [100, 200]},
        {"file_name": "b.jpg", "orig_size": [100, 200]},
    ]
    t = groundtruth.from_yolo_dir(tmp_path, _bundle(images), (128, 128), nc=3)
    # 100×50 px box centred in a 200×100 image → 64×32 centred in the 128×128 input
    assert t.cls.tolist() == [1] and torch.allclose(t.bboxes, torch.tensor([[0.5, 0.5, 0.5, 0.25]]))
    assert any("b.txt" in w for w in t.warnings)


def test_yolo_label_errors(tmp_path):
    (tmp_path / "a.txt").write_text("7 0.5 0.5 0.5 0.5\n")
    with pytest.raises(GroundTruthError, match=r"a.txt:1: class 7"):
        groundtruth.from_yolo_dir(
            tmp_path, _bundle([{"file_name": "a.jpg"}, {"file_name": "b.jpg"}]), (128, 128), 3
        )
    (tmp_path / "a.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(GroundTruthError, match=r"a.txt:1: 3 fields"):
        groundtruth.from_yolo_dir(
            tmp_path, _bundle([{"file_name": "a.jpg"}, {"file_name": "b.jpg"}]), (128, 128), 3
        )


def test_batch_targets_are_sorted_with_a_warning():
    raw = {
        "batch_idx": torch.tensor([1.0, 0.0]),
        "cls": torch.tensor([[2.0], [1.0]]),
        "bboxes": torch.rand(2, 4),
    }
    t = groundtruth.from_batch(raw, 2, (128, 128), nc=3)
    assert t.batch_idx.tolist() == [0, 1] and t.cls.tolist() == [1, 2]
    assert "not sorted" in t.warnings[0]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"batch_idx": [0], "cls": [5], "bboxes": [[0.5, 0.5, 0.1, 0.1]]}, "cls holds 5"),
        ({"batch_idx": [3], "cls": [0], "bboxes": [[0.5, 0.5, 0.1, 0.1]]}, "holds image 3"),
        ({"batch_idx": [0], "cls": [0], "bboxes": [[0.5, 0.5, 0.1]]}, "expected"),
        ({"batch_idx": [0], "cls": [0]}, "lacks bboxes"),
        ({"batch_idx": [0], "cls": [0], "bboxes": [[0.5, float("nan"), 0.1, 0.1]]}, "not finite"),
    ],
)
def test_bad_batch_targets(raw, match):
    with pytest.raises(GroundTruthError, match=match):
        groundtruth.from_batch(raw, 2, (128, 128), nc=3)


def test_no_ground_truth_at_all():
    with pytest.raises(GroundTruthError, match="pass --gt"):
        groundtruth.load_targets(None, _bundle(), (128, 128), 3)
