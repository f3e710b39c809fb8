"""IoU family and letterbox: hand-checkable cases and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolodbg.geometry import Letterbox, bbox_iou, cxcywh_to_xyxy, pairwise_iou, xyxy_to_cxcywh

A = torch.tensor([0.0, 0.0, 2.0, 2.0])
B = torch.tensor([1.0, 1.0, 3.0, 3.0])


def test_iou_of_overlapping_squares():
    # intersection 1×1 = 1, union 4 + 4 − 1 = 7 (eps shifts it by ~1e-7)
    assert float(bbox_iou(A, B, "iou")) == pytest.approx(1 / 7, rel=1e-6)


def test_giou_subtracts_the_empty_part_of_the_hull():
    # hull 3×3 = 9, union 7: GIoU = 1/7 − (9 − 7)/9
    assert float(bbox_iou(A, B, "giou")) == pytest.approx(1 / 7 - 2 / 9, rel=1e-6)


def test_diou_subtracts_the_centre_distance():
    # centres (1,1) and (2,2): ρ² = 2; hull diagonal² = 3² + 3² = 18
    assert float(bbox_iou(A, B, "diou")) == pytest.approx(1 / 7 - 2 / 18, rel=1e-6)


def test_ciou_equals_diou_for_equal_aspect_ratios():
    assert float(bbox_iou(A, B, "ciou")) == pytest.approx(float(bbox_iou(A, B, "diou")), abs=1e-7)


def test_ciou_penalises_aspect_difference():
    wide = torch.tensor([0.0, 0.0, 4.0, 1.0])
    tall = torch.tensor([1.5, -1.5, 2.5, 2.5])
    assert float(bbox_iou(wide, tall, "ciou")) < float(bbox_iou(wide, tall, "diou"))


def test_identical_boxes_have_iou_one():
    assert float(bbox_iou(A, A, "ciou")) == pytest.approx(1.0, abs=1e-6)


def test_unknown_kind_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="ciou"):
        bbox_iou(A, B, "siou2")


def test_ciou_alpha_has_no_gradient():
    # CIoU's aspect weight alpha is a constant: the gradient flows through v, not alpha
    p = torch.tensor([0.0, 0.0, 4.0, 1.0], requires_grad=True)
    bbox_iou(p, torch.tensor([1.0, -1.0, 2.0, 2.0]), "ciou").backward()
    assert torch.isfinite(p.grad).all()


boxes = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(0.5, 50), st.floats(0.5, 50)).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]]
)


@settings(max_examples=200, deadline=None)
@given(boxes, boxes)
def test_iou_is_symmetric_and_bounded(b1, b2):
    t1, t2 = torch.tensor(b1, dtype=torch.float64), torch.tensor(b2, dtype=torch.float64)
    iou = float(bbox_iou(t1, t2, "iou"))
    assert 0.0 <= iou <= 1.0
    assert iou == pytest.approx(float(bbox_iou(t2, t1, "iou")), abs=1e-9)
    for kind, low in (("giou", -1.0), ("diou", -1.0), ("ciou", -2.0)):  # CIoU subtracts α·v ≤ 1 more
        assert low <= float(bbox_iou(t1, t2, kind)) <= iou + 1e-6  # eps shifts by ~1e-7
    assert float(pairwise_iou(t1[None], t2[None])[0, 0]) == pytest.approx(iou, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(boxes)
def test_box_format_round_trip(b):
    t = torch.tensor([b], dtype=torch.float64)
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(t)), t)


def test_ultralytics_letterbox_of_a_wide_image():
    # 200×100 into 128×128: r = min(128/100, 128/200) = 0.64 → 128×64 content, 64 px of padding → 32 top
    lb = Letterbox.ultralytics((100, 200), (128, 128))
    assert (lb.scale_x, lb.scale_y, lb.pad_left, lb.pad_top) == (0.64, 0.64, 0.0, 32.0)
    assert lb.to_input_xyxy(50, 25, 100, 50) == pytest.approx((32.0, 48.0, 96.0, 80.0))
    assert lb.to_original_xyxy((32.0, 48.0, 96.0, 80.0)) == pytest.approx((50, 25, 150, 75))


def test_letterbox_follows_load_image_ceil_then_letterbox():
    # Ultralytics val: long side 500 → 640 (r = 1.28), short side ceil(333 · 1.28 = 426.24) = 427 rows,
    # then 213 rows of padding: round(106.5 − 0.1) = 106 on top; the y scale is 427/333, not 1.28
    lb = Letterbox.ultralytics((333, 500), (640, 640))
    assert (lb.scale_x, lb.scale_y, lb.pad_top, lb.pad_left) == (1.28, 427 / 333, 106.0, 0.0)
    # a rect batch shape smaller than the resized image: LetterBox shrinks it (scaleup=False keeps r2 ≤ 1)
    lb = Letterbox.ultralytics((480, 640), (384, 640))
    assert lb.scale_x == pytest.approx(0.8) and lb.pad_left == 64.0 and lb.pad_top == 0.0


def test_letterbox_odd_padding_rounds_like_ultralytics():
    # 3 px of padding: round(1.5 − 0.1) = 1 on top, the other 2 px at the bottom
    lb = Letterbox.ultralytics((61, 64), (64, 64))
    assert lb.pad_top == 1.0 and lb.pad_left == 0.0
    assert math.isclose(lb.scale_x, 1.0)
