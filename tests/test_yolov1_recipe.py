"""The ``yolov1`` recipe: a hand-computed 2×2 case, properties, edge cases, head parsing and the CLI.

No reference package exists for the YOLOv1 paper's loss, so the numbers here are worked out by hand
(arithmetic in the comments) and the rest is checked through properties.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import breakdown, bundle, groundtruth, nonfinite
from yolodbg.api import Replay
from yolodbg.errors import BundleError
from yolodbg.heads import yolov1 as head
from yolodbg.recipes.yolov1 import YoloV1

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "yolov1_val.pt"
SAMPLE_GT = ROOT / "sample_data" / "coco_val.json"
TERMS = ("coord", "conf_obj", "conf_noobj", "cls")
REL = 1e-6


def run(outputs, rows, size=(64, 64), nc=2, **params):
    """Replay yolov1 with params on outputs and GT rows (image, cls, cx, cy, w, h), as ``api.replay`` does
    (which has no ``nc`` argument; the layouts here are ambiguous without it)."""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    targets = {"batch_idx": t[:, 0], "cls": t[:, 1], "bboxes": t[:, 2:]}
    rec = YoloV1(params)
    b = bundle.from_object(
        {"yolodbg": 1, "head": "yolov1", "outputs": outputs, "targets": targets}, input_size=size, nc=nc
    )
    size, n_cls = rec.input_layout(b)
    gt = groundtruth.from_batch(b.targets, b.batch_size, size, n_cls)
    return Replay(rec.run(b, gt), gt)


def per_gt(res, term: str, m: int) -> list[float]:
    """Ledger sum per GT row, then background last."""
    led = res.result.ledger[term]
    out = torch.zeros(m + 1, dtype=torch.float64).index_add_(0, led.gt.clamp(min=-1) % (m + 1), led.values)
    return out.tolist()


# ------------------------------------------------------------------------------------------------ hand case
# S=2, nb=2, C=2, input 64x64 (cells of 32 px), batch of 2. Cell values: [x, y, w, h, conf] x 2, then p0, p1.
#
# Image 0, GT A: class 0, centre (0.25, 0.25), 0.25 x 0.25 -> cell (row 0, col 0); target x = y = 0.5,
#   √w = √h = 0.5. GT box in px: x, y in [8, 24].
#   P0 = (0.75, 0.5, 0.25, 0.25, conf 0.5): centre x (0 + 0.75)/2 = 0.375 -> px box x [16, 32], y [8, 24];
#        inter 8·16 = 128, union 256 + 256 - 128 = 384, IoU = 1/3.
#   P1 = (0.5, 0.5, 0.0625, 0.0625, conf 0.25): 4x4 px box inside A: IoU = 16 / 256 = 1/16.
#   -> P0 responsible (anchor 0·4 + 0 = 0). coord = 5·((0.75-0.5)² + 0 + (0.5-0.5)² + 0) = 5·0.0625 = 0.3125
#      conf_obj = (0.5 - 1/3)² = 1/36; cls: p = (0.75, 0.25) vs (1, 0): 0.0625 + 0.0625 = 0.125
#      P1 not responsible: conf_noobj 0.5·0.25² = 0.03125
# Image 0, GT B: class 1, centre (0.75, 0.5), 0.25 x 0.25: cy·2 = 1.0 -> row 1 (a border goes to the cell
#   below), col 1; target x = 0.5, y = 0.0. GT px box x [40, 56], y [24, 40].
#   P0 = (0.5, 0.0, -0.25, 0.25, conf 0.8): negative w -> empty box, IoU 0.
#   P1 = (0.5, 0.25, 0.25, 0.25, conf 0.6): centre (0.75, 0.625) -> px x [40, 56], y [32, 48]:
#        inter 16·8 = 128, union 384, IoU 1/3.
#   -> P1 responsible (anchor 1·4 + 1·2 + 1 = 7). coord = 5·(0 + (0.25 - 0)² + 0 + 0) = 0.3125
#      conf_obj = (0.6 - 1/3)² = (4/15)² = 16/225; cls: p = (0.5, 0.5) vs (0, 1): 0.25 + 0.25 = 0.5
#      P0 not responsible: conf_noobj 0.5·0.8² = 0.32
#   Empty cells of image 0: (row 0, col 1) confs 0.5, 0 -> 0.125; (row 1, col 0) confs 0, -1 -> 0.5.
# Image 1, GT C: class 0, centre (0.75, 0.25), 0.25 x 0.25 -> cell (row 0, col 1); target x = y = 0.5.
#   P0 = (0.5, 0.5, -0.25, 0.25, conf 0.25): empty box, IoU 0.
#   P1 = (0.0, 0.0, 0.125, 0.125, conf -0.5): centre (0.5, 0.0), x [0.4375, 0.5625] vs GT [0.625, 0.875]:
#        IoU 0.
#   -> tie at 0: P0 responsible by the first-predictor rule (anchor 0·4 + 0·2 + 1 = 1), reason zero_iou.
#      coord = 5·(0 + 0 + (sign(-0.25)·√0.25 - 0.5)² + 0) = 5·(-1)² = 5
#      conf_obj = (0.25 - 0)² = 0.0625; cls: p = (1.0, 0.5) vs (1, 0): 0 + 0.25 = 0.25
#      P1 not responsible: 0.5·0.25 = 0.125.  Other cell (row 0, col 0) conf 0.25 -> 0.03125.
# Totals, divided by the batch size 2 (normalize=batch):
#   coord      (0.3125 + 0.3125 + 5) / 2                        = 2.8125
#   conf_obj   (1/36 + 16/225 + 1/16) / 2 = (100 + 256 + 225) / 3600 / 2 = 581/7200
#   conf_noobj (0.03125 + 0.32 + 0.125 + 0.5 + 0.125 + 0.03125) / 2 = 1.1325 / 2 = 0.56625
#   cls        (0.125 + 0.5 + 0.25) / 2                         = 0.4375


def hand_case() -> tuple[torch.Tensor, list]:
    out = torch.zeros(2, 2, 2, 12)
    out[0, 0, 0] = torch.tensor([0.75, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 0.0625, 0.0625, 0.25, 0.75, 0.25])
    out[0, 1, 1] = torch.tensor([0.5, 0.0, -0.25, 0.25, 0.8, 0.5, 0.25, 0.25, 0.25, 0.6, 0.5, 0.5])
    out[0, 0, 1, [4, 9]] = torch.tensor([0.5, 0.0])
    out[0, 1, 0, [4, 9]] = torch.tensor([0.0, -1.0])
    out[1, 0, 1] = torch.tensor([0.5, 0.5, -0.25, 0.25, 0.25, 0.0, 0.0, 0.125, 0.125, -0.5, 1.0, 0.5])
    out[1, 0, 0, 4] = 0.25
    rows = [
        [0, 0, 0.25, 0.25, 0.25, 0.25],  # A
        [0, 1, 0.75, 0.5, 0.25, 0.25],  # B
        [1, 0, 0.75, 0.25, 0.25, 0.25],  # C
    ]
    return out, rows


def test_hand_case_every_term() -> None:
    out, rows = hand_case()
    res = run(out, rows, wh_eps=0.0)
    expected = {"coord": 2.8125, "conf_obj": 581 / 7200, "conf_noobj": 0.56625, "cls": 0.4375}
    for t, v in expected.items():
        assert res.terms[t] == pytest.approx(v, rel=REL), t
    assert res.objective == pytest.approx(sum(expected.values()), rel=REL)
    pos = res.result.positives
    assert pos.image.tolist() == [0, 0, 1] and pos.gt.tolist() == [0, 1, 2]
    assert pos.anchor.tolist() == [0, 7, 1]
    assert pos.iou.tolist() == pytest.approx([1 / 3, 1 / 3, 0.0], rel=REL)
    assert res.fg.sum() == 3 and res.gt_index[0, 7] == 1 and res.gt_index[1, 1] == 0
    # conf target = IoU of the responsible predictor, 0 elsewhere
    assert res.target_score[0, 0] == pytest.approx(1 / 3) and res.target_score[1, 1] == 0
    # per GT (ledger rows), in batch units: A, B, C, background
    assert per_gt(res, "coord", 3) == pytest.approx([0.15625, 0.15625, 2.5, 0.0], rel=REL)
    assert per_gt(res, "conf_obj", 3) == pytest.approx([1 / 72, 8 / 225, 1 / 32, 0.0], rel=REL)
    assert per_gt(res, "cls", 3) == pytest.approx([0.0625, 0.25, 0.125, 0.0], rel=REL)
    assert per_gt(res, "conf_noobj", 3) == pytest.approx([0, 0, 0, 0.56625], rel=REL)
    reasons = res.result.gt_reasons
    assert set(reasons) == {2} and reasons[2].code == "zero_iou"
    assert res.result.positives.flags["zero_iou"].tolist() == [False, False, True]
    assert res.result.positives.flags["negative_wh"].tolist() == [False, False, True]


def test_hand_case_variants() -> None:
    out, rows = hand_case()
    base = run(out, rows, wh_eps=0.0).terms
    # conf_target=one: (0.5-1)² + (0.6-1)² + (0.25-1)² = 0.25 + 0.16 + 0.5625 = 0.9725, / 2
    assert run(out, rows, wh_eps=0.0, conf_target="one").terms["conf_obj"] == pytest.approx(0.48625, rel=REL)
    # wh_sqrt=clamp: C's √w becomes √0 = 0: 5·(0 - 0.5)² = 1.25 instead of 5 -> (0.625 + 1.25) / 2
    assert run(out, rows, wh_eps=0.0, wh_sqrt="clamp").terms["coord"] == pytest.approx(0.9375, rel=REL)
    # wh_sqrt=plain: √(-0.25) is NaN
    assert math.isnan(run(out, rows, wh_eps=0.0, wh_sqrt="plain").terms["coord"])
    # normalize=none: the paper's plain sum, twice the batch mean
    plain = run(out, rows, wh_eps=0.0, normalize="none").terms
    assert all(plain[t] == pytest.approx(2 * base[t], rel=REL) for t in TERMS)
    # gains scale their own term only
    g = run(
        out, rows, wh_eps=0.0, **{"gain.coord": 1.0, "gain.noobj": 1.0, "gain.cls": 2.0, "gain.obj": 3.0}
    ).terms
    assert g["coord"] == pytest.approx(base["coord"] / 5, rel=REL)
    assert g["conf_noobj"] == pytest.approx(base["conf_noobj"] * 2, rel=REL)
    assert g["cls"] == pytest.approx(base["cls"] * 2, rel=REL)
    assert g["conf_obj"] == pytest.approx(base["conf_obj"] * 3, rel=REL)


def test_hand_case_rmse_fallback() -> None:
    # C with zero_iou=rmse (darknet): RMSE of (cx, cy, w, h): P0 (0.75, 0.25, -0.25, 0.25) -> √0.25 = 0.5;
    # P1 (0.5, 0.0, 0.125, 0.125) -> √(0.0625·2 + 0.015625·2) ≈ 0.395: P1 responsible (anchor 4 + 1 = 5).
    # coord_C = 5·((0-0.5)² + (0-0.5)² + (√0.125-0.5)² ·2); conf_obj_C = (-0.5 - 0)² = 0.25
    # conf_noobj: P0 of C's cell is now background: 0.5·0.25² = 0.03125 instead of 0.5·0.25 for P1.
    out, rows = hand_case()
    res = run(out, rows, wh_eps=0.0, **{"assigner.zero_iou": "rmse"})
    assert res.result.positives.anchor.tolist() == [0, 7, 5]
    assert res.result.positives.flags["rmse_fallback"].tolist() == [False, False, True]
    coord_c = 5 * (0.25 + 0.25 + 2 * (math.sqrt(0.125) - 0.5) ** 2)
    assert res.terms["coord"] == pytest.approx((0.625 + coord_c) / 2, rel=REL)
    assert res.terms["conf_obj"] == pytest.approx((1 / 36 + 16 / 225 + 0.25) / 2, rel=REL)
    assert res.terms["conf_noobj"] == pytest.approx((1.1325 - 0.125 + 0.03125) / 2, rel=REL)


def test_head_predicting_sqrt_directly() -> None:
    # S = 1, nb = 1, C = 1: output (x, y, w, h, conf, p) = (0.5, 0.5, 0.5, 0.5, 1, 1); GT centred, 0.25 x 0.25.
    # wh_sqrt=direct (darknet sqrt=1): the box has w = h = 0.5² = 0.25 = the GT: IoU 1, coord 0, conf_obj 0.
    # signed (ε = 0): box 0.5 x 0.5, IoU = 0.0625 / 0.25 = 0.25; coord = 5·2·(√0.5 - 0.5)², conf_obj = 0.75²
    out = torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 1.0]).view(1, 1, 1, 6)
    rows = [[0, 0, 0.5, 0.5, 0.25, 0.25]]
    direct = run(out, rows, nc=1, wh_sqrt="direct")
    assert direct.result.positives.iou.tolist() == pytest.approx([1.0])
    assert direct.terms["coord"] == pytest.approx(0.0, abs=1e-12) and direct.terms[
        "conf_obj"
    ] == pytest.approx(0.0)
    signed = run(out, rows, nc=1, wh_eps=0.0)
    assert signed.terms["coord"] == pytest.approx(10 * (math.sqrt(0.5) - 0.5) ** 2, rel=REL)
    assert signed.terms["conf_obj"] == pytest.approx(0.5625, rel=REL)
    assert signed.terms["cls"] == direct.terms["cls"] == 0.0


def test_default_eps_under_the_root() -> None:
    # default wh_eps 1e-6: C's √w is sign(-0.25)·√(0.25 + 1e-6); A and B: √(0.25 + 1e-6) - 0.5 for w and h
    out, rows = hand_case()
    r = math.sqrt(0.25 + 1e-6)
    coord = 5 * (0.0625 + 2 * (r - 0.5) ** 2) * 2 + 5 * ((-r - 0.5) ** 2 + (r - 0.5) ** 2)
    assert run(out, rows).terms["coord"] == pytest.approx(coord / 2, rel=REL)


# ------------------------------------------------------------------------------------------------ properties


@st.composite
def scenes(draw):
    s = draw(st.integers(1, 4))
    nb = draw(st.integers(1, 3))
    nc = draw(st.integers(1, 4))
    bs = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(bs, s, s, nb * 5 + nc, generator=g) * 1.4 - 0.2
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        w, h = draw(st.floats(0.01, 1.0)), draw(st.floats(0.01, 1.0))
        cx, cy = draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0))
        rows.append([draw(st.integers(0, bs - 1)), draw(st.integers(0, nc - 1)), cx, cy, w, h])
    rows.sort(key=lambda r: r[0])
    return out, rows, draw(st.sampled_from(["first", "last", "largest"])), nc


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenes())
def test_conservation(scene) -> None:
    out, rows, rule, nc = scene
    res = run(out, rows, nc=nc, **{"assigner.conflict": rule})
    bd = breakdown.build(res.result, res.targets)
    assert bd.violations == []
    for t in TERMS:
        parts = sum(g.terms[t] for g in bd.gts) + bd.background[t]
        assert parts == pytest.approx(res.terms[t], rel=1e-5, abs=1e-6)
    assert res.objective == pytest.approx(sum(res.terms.values()), rel=1e-6)
    # every GT is either responsible for exactly one predictor or lost its cell
    for g in bd.gts:
        assert g.num_pos == 1 or g.reason.code == "cell_taken"


@SETTINGS
@given(scenes())
def test_moving_prediction_onto_gt_lowers_coord(scene) -> None:
    out, rows, _, nc = scene
    res = run(out, rows, nc=nc, wh_eps=0.0)
    pos = res.result.positives
    if not len(pos.gt):
        return
    g = int(pos.gt[0])
    b, a = int(pos.image[0]), int(pos.anchor[0])
    s, nb = out.shape[1], (out.shape[3] - res.result.pred_scores.shape[2]) // 5
    slot, cell = divmod(a, s * s)
    r, c = divmod(cell, s)
    cx, cy, w, h = rows[g][2:]
    moved = out.clone()
    moved[b, r, c, slot * 5 : slot * 5 + 4] = torch.tensor([cx * s - c, cy * s - r, w, h])
    after = run(moved, rows, nc=nc, wh_eps=0.0)
    led_before, led_after = per_gt(res, "coord", len(rows))[g], per_gt(after, "coord", len(rows))[g]
    assert led_after <= led_before + 1e-9
    assert led_after == pytest.approx(0.0, abs=1e-9)
    assert after.terms["coord"] <= res.terms["coord"] + 1e-6
    assert nb >= 1


@SETTINGS
@given(scenes(), st.floats(-2.0, 2.0))
def test_conf_noobj_only_sees_non_responsible_predictors(scene, new_conf) -> None:
    out, rows, _, nc = scene
    res = run(out, rows, nc=nc)
    bs, s, _, d = out.shape
    nc = res.result.pred_scores.shape[2]
    nb = (d - nc) // 5
    conf = head.flatten_predictors(out[..., : nb * 5].reshape(bs, s, s, nb, 5)[..., 4].unsqueeze(-1)).squeeze(
        -1
    )
    expected = 0.5 * float((conf.double() ** 2 * ~res.fg).sum()) / bs
    assert res.terms["conf_noobj"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # change the confidence of every responsible predictor and every class score: conf_noobj stays put
    changed = out.clone()
    for b, a in zip(res.result.positives.image.tolist(), res.result.positives.anchor.tolist(), strict=True):
        slot, cell = divmod(a, s * s)
        changed[b, cell // s, cell % s, slot * 5 + 4] = new_conf
    changed[..., nb * 5 :] = new_conf
    again = run(changed, rows, nc=nc)
    assert torch.equal(again.fg, res.fg)
    assert again.terms["conf_noobj"] == res.terms["conf_noobj"]


# ------------------------------------------------------------------------------------------------ edge cases


def test_empty_image_and_all_empty_batch() -> None:
    g = torch.Generator().manual_seed(3)
    out = torch.randn(3, 7, 7, 30, generator=g)
    conf = out[..., [4, 9]]
    res = run(out, [[1, 4, 0.5, 0.5, 0.2, 0.3]], size=(448, 448), nc=20)
    assert res.fg[0].sum() == 0 and res.fg[2].sum() == 0 and res.fg[1].sum() == 1
    empty = run(out, [], size=(448, 448), nc=20)
    assert empty.terms["coord"] == empty.terms["conf_obj"] == empty.terms["cls"] == 0.0
    assert empty.terms["conf_noobj"] == pytest.approx(0.5 * float((conf.double() ** 2).sum()) / 3, rel=1e-6)
    bd = breakdown.build(empty.result, empty.targets)
    assert bd.violations == [] and bd.gts == [] and bd.negatives


@pytest.mark.parametrize(
    ("cx", "col", "tx"),
    [
        (0.5, 1, 0.0),
        (0.25, 0, 0.5),
        (0.375, 0, 0.75),
        (0.7, 1, 0.4),
        (1.0, 1, 1.0),
        (0.0, 0, 0.0),
        (0.99999, 1, 0.99998),
    ],
)
def test_centre_on_cell_border(cx, col, tx) -> None:
    # S = 2: col = floor(cx·2) clamped to 1; x target = cx·2 - col (1.0 at the right image edge)
    out = torch.zeros(1, 2, 2, 12)
    res = run(out, [[0, 0, cx, cx, 0.2, 0.2]])
    pos = res.result.positives
    assert int(pos.anchor[0]) == col * 2 + col  # slot 0 (tie at IoU 0), cell (col, col)
    # all predictions are 0 (sign(0)·√(0 + ε) = 0):
    # coord = 5·((0 - tx)² · 2 + (0 - √0.2)² · 2) = 5·(2 tx² + 0.4)
    assert res.terms["coord"] == pytest.approx(5 * (2 * tx**2 + 0.4), rel=1e-4)


@pytest.mark.parametrize(("rule", "winner"), [("first", 0), ("last", 2), ("largest", 1)])
def test_two_gts_in_one_cell(rule, winner) -> None:
    out = torch.zeros(1, 2, 2, 12)
    rows = [[0, 0, 0.2, 0.2, 0.1, 0.1], [0, 1, 0.3, 0.3, 0.4, 0.4], [0, 0, 0.1, 0.4, 0.2, 0.2]]
    res = run(out, rows, **{"assigner.conflict": rule})
    assert res.result.positives.gt.tolist() == [winner]
    reasons = res.result.gt_reasons
    for r in range(3):
        if r == winner:
            assert reasons[r].code == "zero_iou"  # all-zero predictions overlap nothing
        else:
            assert reasons[r].code == "cell_taken" and reasons[r].other_gt == winner
    bd = breakdown.build(res.result, res.targets)
    assert [g.num_pos for g in bd.gts] == [int(r == winner) for r in range(3)]
    assert all(bd.gts[r].total == 0 for r in range(3) if r != winner)
    # class of the winner only: cls = (0 - onehot)² summed = 1
    assert res.terms["cls"] == pytest.approx(1.0)


def test_tiny_and_image_sized_boxes() -> None:
    out = torch.zeros(1, 7, 7, 30)
    # image-sized box centred at 0.5 -> cell (3, 3): 0.5·7 = 3.5; x = y = 0.5; predictor 1 predicts it exactly
    out[0, 3, 3, 5:10] = torch.tensor([0.5, 0.5, 1.0, 1.0, 1.0])
    # tiny box (2 px at 448) in cell (0, 6); predictor 0 predicts it exactly
    out[0, 0, 6, 0:5] = torch.tensor([0.5, 0.5, 2 / 448, 2 / 448, 0.0])
    rows = [[0, 2, 0.5, 0.5, 1.0, 1.0], [0, 3, 6.5 / 7, 0.5 / 7, 2 / 448, 2 / 448]]
    res = run(out, rows, size=(448, 448), nc=20, wh_eps=0.0)
    pos = res.result.positives
    assert pos.anchor.tolist() == [49 + 3 * 7 + 3, 6]
    assert pos.iou.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert res.terms["coord"] == pytest.approx(0.0, abs=1e-9)
    # conf_obj: (1 - 1)² + (0 - 1)² = 1
    assert res.terms["conf_obj"] == pytest.approx(1.0, abs=2e-4)


def test_nonfinite_locator_names_the_gt() -> None:
    out, rows = hand_case()
    res = run(out, rows, wh_sqrt="plain")
    nf = nonfinite.locate(res.result, res.targets)
    assert nf is not None and nf.term == "coord" and nf.gt_row == 2 and nf.image_index == 1
    assert any("wh_sqrt=plain" in w for w in res.result.warnings)


def test_inputs_untouched() -> None:
    out, rows = hand_case()
    before = out.clone()
    run(out, rows)
    assert torch.equal(out, before)


# ----------------------------------------------------------------------------------------------- head parsing


def test_head_layout_and_anchor_order() -> None:
    out = head.parse(torch.zeros(2, 7, 7, 30))
    assert (out.nb, out.nc, out.grid, out.input_size) == (2, 20, (7, 7), (448, 448))
    out = head.parse(torch.zeros(1, 3, 3, 14), nc=4, input_size=(96, 96))
    assert (out.nb, out.nc) == (2, 4)
    assert head.parse(torch.zeros(1, 3, 3, 14), category_ids=(1, 2, 3, 7)).nc == 4
    assert head.parse(torch.zeros(1, 3, 3, 14), boxes_per_cell=1).nc == 9
    with pytest.raises(BundleError, match="--nc"):
        head.parse(torch.zeros(1, 3, 3, 14))
    with pytest.raises(BundleError, match="nb\\*5"):
        head.parse(torch.zeros(1, 3, 3, 14), nc=3)
    with pytest.raises(BundleError, match="view"):
        head.parse(torch.zeros(2, 3 * 3 * 30))
    # anchor a = slot·S·S + row·S + col, the same order as the Anchors table
    sh, sw, nb = 3, 4, 2
    parsed = head.parse(torch.zeros(1, sh, sw, nb * 5 + 1), nc=1, input_size=(96, 128))
    anchors = head.anchors(parsed)
    idx = torch.arange(sh * sw * nb).view(1, sh, sw, nb)  # value = (row·sw + col)·nb + slot
    flat = head.flatten_predictors(idx)[0]
    for a in range(len(anchors)):
        col, row = anchors.cell[a].tolist()
        slot = int(anchors.slot[a])
        assert int(flat[a]) == (row * sw + col) * nb + slot
        assert int(head.anchor_index(torch.tensor(slot), torch.tensor(row), torch.tensor(col), (sh, sw))) == a
    assert anchors.points[5].tolist() == [(1 + 0.5) * 32, (1 + 0.5) * 32]


# ------------------------------------------------------------------------------------------------ CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolodbg", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_explain_json(tmp_path) -> None:
    out, rows = hand_case()
    t = torch.tensor(rows, dtype=torch.float32)
    path = bundle.save(
        tmp_path / "v1.pt",
        out,
        head="yolov1",
        input_size=[64, 64],
        targets={"batch_idx": t[:, 0], "cls": t[:, 1], "bboxes": t[:, 2:]},
    )
    report = tmp_path / "report.json"
    proc = _cli("explain", str(path), "--nc", "2", "--json", str(report), "-r", "yolov1:wh_eps=0")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(report.read_text())
    assert doc["recipe"]["name"] == "yolov1" and set(doc["terms"]) == set(TERMS)
    assert doc["terms"]["coord"] == pytest.approx(2.8125, rel=REL)
    assert [g["reason"]["code"] if g["reason"] else None for g in doc["gts"]] == [None, None, "zero_iou"]
    assert doc["negatives"] and all(n["image_index"] in (0, 1) for n in doc["negatives"])
    assert_valid(doc, "yolodbg.explain/1")
    # default recipe of the head, console output
    proc = _cli("explain", str(path), "--nc", "2")
    assert proc.returncode == 0, proc.stderr
    assert "conf_noobj" in proc.stdout and "= total" in proc.stdout
    # without --nc the 12 values per cell are ambiguous: exit 2 and a one-line message naming the fix
    proc = _cli("explain", str(path))
    assert proc.returncode == 2 and "--nc" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not (SAMPLE.exists() and SAMPLE_GT.exists()), reason="sample bundle not generated")
def test_cli_explain_sample_bundle(tmp_path) -> None:
    report = tmp_path / "sample.json"
    proc = _cli("explain", str(SAMPLE), "--gt", str(SAMPLE_GT), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(report.read_text())
    assert doc["recipe"]["name"] == "yolov1" and doc["num_gt"] > 0 and doc["num_pos"] > 0
    # the generator's own dense label-grid loss (written independently of yolodbg) on the same outputs
    script_loss = torch.load(SAMPLE, weights_only=True)["meta"]["script_loss"]
    for t in TERMS:
        assert doc["terms"][t] == pytest.approx(script_loss[t], rel=1e-5), t
    assert any(g["reason"] and g["reason"]["code"] == "cell_taken" for g in doc["gts"])
    assert_valid(doc, "yolodbg.explain/1")
