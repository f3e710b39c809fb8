"""The ``yolov5`` recipe without the framework: hand-computed cases, edge cases, reasons, flags, errors,
conservation as a property, and the sample bundle through the CLI.

Parity with the real ``yolov5`` package is in ``test_golden_yolov5.py`` (stored fixtures) and
``test_parity_yolov5.py`` (live).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import breakdown, bundle, groundtruth
from yolodbg.errors import BundleError, RecipeError
from yolodbg.heads import yolov5 as head
from yolodbg.heads.lazy import LazyAnchorTensor
from yolodbg.recipes.yolov5 import YoloV5, rescaled_gains
from yolodbg.recipes.yolov5_loss import bbox_iou_xywh

ROOT = Path(__file__).resolve().parents[1]
LN2 = math.log(2.0)


def run(levels, rows, anchors=None, params=None, strides=None, input_size=None):
    """Replay ``yolov5`` on per-level outputs and ``(n, 6)`` rows (image, class, cx, cy, w, h)."""
    rows = torch.as_tensor(rows, dtype=torch.float32).view(-1, 6)
    doc = {
        "yolodbg": 1,
        "head": "yolov5",
        "outputs": levels,
        "targets": {"batch_idx": rows[:, 0], "cls": rows[:, 1], "bboxes": rows[:, 2:]},
    }
    if anchors is not None:
        doc["anchors"] = anchors
    b = bundle.from_object(doc, strides=strides, input_size=input_size)
    recipe = YoloV5(params)
    size, nc = recipe.input_layout(b)
    targets = groundtruth.from_batch(b.targets, b.batch_size, size, nc)
    res = recipe.run(b, targets)
    return res, targets, breakdown.build(res, targets)


def one_level(b: int = 1, nc: int = 2, fill: float = 0.0) -> list[torch.Tensor]:
    """One 8×8 level (stride 8, 64×64 input), one anchor of 16×16 px per cell, all logits ``fill``."""
    return [torch.full((b, 1, 8, 8, 5 + nc), fill)]


ANCHOR_16 = [[[16.0, 16.0]]]


def test_hand_computed_single_positive() -> None:
    # GT 16×16 px centred at (36, 36) px = grid (4.5, 4.5): on a half-cell line in x and y, so no neighbour
    # cell joins (4.5 mod 1 = 0.5 is not < 0.5): exactly one positive, cell (4, 4), target (0.5, 0.5, 2, 2).
    # All logits 0: σ = 0.5, so pxy = 2·0.5 − 0.5 = 0.5 and pwh = (2·0.5)²·2 = 2: the box is exact, IoU 1,
    # CIoU 1, box loss 0. Every BCE with logit 0 is ln 2 whatever the target.
    # Gains for nl = 1, nc = 2, imgsz 64: box 0.05·3 = 0.15, obj 1.0·(64/640)²·3 = 0.03, cls 0.5·(2/80)·3 = 0.0375;
    # balance for one level is 4.0. obj = 0.03·4·ln 2, cls = 0.0375·ln 2.
    res, _, bd = run(one_level(), [[0, 1, 36 / 64, 36 / 64, 16 / 64, 16 / 64]], ANCHOR_16)
    assert res.terms["box"] == 0.0
    assert res.terms["obj"] == pytest.approx(0.03 * 4 * LN2, rel=1e-6)
    assert res.terms["cls"] == pytest.approx(0.0375 * LN2, rel=1e-6)
    assert res.objective == pytest.approx(0.03 * 4 * LN2 + 0.0375 * LN2, rel=1e-6)
    assert res.normalizers["positives.P3"] == 1 and res.normalizers["obj_cells.P3"] == 64
    (gt,) = bd.gts
    assert gt.num_pos == 1 and gt.positives[0]["cell"] == [4, 4] and gt.positives[0]["offset_centre"]
    # the positive cell's objectness is 1/64 of the level's mean: 0.03·4·ln 2 / 64; the other 63 are background
    assert gt.terms["obj"] == pytest.approx(0.03 * 4 * LN2 / 64, rel=1e-6)
    assert bd.background["obj"] == pytest.approx(0.03 * 4 * LN2 * 63 / 64, rel=1e-6)
    assert gt.terms["cls"] == pytest.approx(res.terms["cls"], rel=1e-6) and bd.background["cls"] == 0
    assert float(res.target_score[0, 4 * 8 + 4]) == 1.0 and int(res.fg.sum()) == 1
    assert not bd.violations


def test_batch_objective_is_items_times_batch() -> None:
    res, _, _ = run(one_level(b=3), [[1, 0, 0.3, 0.6, 0.2, 0.3], [2, 1, 0.5, 0.5, 0.5, 0.4]], ANCHOR_16)
    assert res.objective == pytest.approx(3 * sum(res.terms.values()), rel=1e-6)


def test_neighbour_cells_duplicates_and_clamp() -> None:
    # gx = 4.0 exactly (a cell corner): own cell 4, left (4 − 0.5 → 3, since 4.0 mod 1 = 0 < 0.5 and gx > 1),
    # right (W − gx = 4.0 passes too, and 4 + 0.5 truncates back to 4: a duplicate of the own cell).
    # gy = 2.3: own row 2 and the upper row 1 (0.3 < 0.5); the lower test fails (5.7 mod 1 = 0.7).
    _, _, bd = run(one_level(), [[0, 0, 4 / 8, 2.3 / 8, 0.25, 0.25]], ANCHOR_16)
    cells = sorted(tuple(p["cell"]) for p in bd.gts[0].positives)
    assert cells == [(3, 2), (4, 1), (4, 2), (4, 2)]
    assert bd.gts[0].flags["duplicate_cell"] == 2 and bd.gts[0].flags["offset_right"] == 1
    # cx = 1.0: gx = 8 = W truncates to cell 8, clamped in place to 7, so the regression target x is 8 − 7 = 1.0;
    # the left neighbour (7.5 → 7) lands on the same cell; W − gx = 0 fails the right test. gy = 4.3 adds the
    # upper row, whose x (8 → 7) is clamped too: 3 positives, 2 of them clamped, 2 in the same cell.
    _, _, bd = run(one_level(), [[0, 0, 1.0, 4.3 / 8, 0.25, 0.25]], ANCHOR_16)
    cells = sorted(tuple(p["cell"]) for p in bd.gts[0].positives)
    assert cells == [(7, 3), (7, 4), (7, 4)] and bd.gts[0].flags["cell_clamped"] == 2


def test_duplicate_gt_loses_objectness_to_the_later_row() -> None:
    # Two GTs with the same box: their positives hit the same cells; the later row's write wins (CPU order),
    # so row 0 keeps its box and class terms but its objectness cells are attributed to row 1.
    box = [0.4, 0.45, 0.3, 0.2]
    res, _, bd = run(one_level(fill=0.3), [[0, 0, *box], [0, 1, *box]], ANCHOR_16)
    g0, g1 = bd.gts
    assert g0.reason is not None and g0.reason.code == "lost_conflict" and g0.reason.other_gt == 1
    assert g0.terms["obj"] == 0.0 and g1.terms["obj"] > 0 and g0.terms["box"] == g1.terms["box"] > 0
    assert g0.flags["obj_overwritten"] == g0.num_pos and "obj_overwritten" not in g1.flags
    assert not bd.violations
    assert any("later-written positive" in n for n in res.notes)


def test_anchor_ratio_reason_and_empty_images() -> None:
    # 1×1 px and 0-wide boxes against a 16 px anchor: ratio 16 and ∞, both ≥ anchor_t 4 -> no positive.
    rows = [[0, 0, 0.5, 0.5, 1 / 64, 1 / 64], [0, 1, 0.3, 0.3, 0.0, 0.2], [2, 0, 0.5, 0.5, 0.25, 0.25]]
    _, _, bd = run(one_level(b=3), rows, ANCHOR_16)
    assert [g.num_pos for g in bd.gts][:2] == [0, 0]
    assert bd.gts[0].reason.code == "anchor_ratio" and "×16.00" in bd.gts[0].reason.detail
    assert bd.gts[1].reason.code == "anchor_ratio" and "zero side" in bd.gts[1].reason.detail
    assert bd.images[1].num_gt == 0 and bd.images[1].terms["box"] == 0 and bd.images[1].terms["obj"] > 0
    assert not bd.violations


def test_all_empty_batch() -> None:
    levels = [torch.randn(2, 3, s, s, 8) for s in (8, 4, 2)]
    res, _, bd = run(levels, torch.zeros(0, 6))
    assert res.terms["box"] == 0 and res.terms["cls"] == 0 and res.terms["obj"] > 0
    assert int(res.fg.sum()) == 0 and not bd.gts and bd.background["obj"] == pytest.approx(res.terms["obj"])
    assert any("default anchors" in w for w in res.warnings)
    assert len(bd.negatives) == 10 and all("obj" in n.terms for n in bd.negatives)


def test_single_class_has_no_cls_term() -> None:
    levels = [torch.randn(1, 3, s, s, 6) for s in (8, 4, 2)]
    res, _, bd = run(levels, [[0, 0, 0.5, 0.5, 0.3, 0.4]])
    assert res.terms["cls"] == 0.0 and any("nc = 1" in n for n in res.notes) and not bd.violations


def test_single_anchor_and_few_cells_reasons() -> None:
    # 3-level 64×64 input with the yolov5s anchors: a 100×8 px box matches no anchor within ×4 except...
    levels = [torch.zeros(1, 3, s, s, 7) for s in (8, 4, 2)]
    rows = [
        [
            0,
            0,
            0.5,
            0.5,
            6 / 64,
            6 / 64,
        ],  # 6×6 px: only P3's 10×13 and 16×30? 16/6 = 2.7, 30/6 = 5 -> one anchor
        [
            0,
            1,
            3 / 64,
            40 / 64,
            20 / 64,
            24 / 64,
        ],  # centre 3 px from the left border: no left neighbour on P3
    ]
    _, _, bd = run(levels, rows)
    assert bd.gts[0].reason.code == "single_anchor" and "10×13 px" in bd.gts[0].reason.detail
    assert bd.gts[1].reason.code == "few_cells" and "left" in bd.gts[1].reason.detail


def test_rescaled_gains_follow_train_py() -> None:
    assert rescaled_gains(0.05, 1.0, 0.5, nl=3, nc=80, imgsz=640) == (0.05, 1.0, 0.5)
    box, obj, cls = rescaled_gains(0.05, 1.0, 0.5, nl=4, nc=3, imgsz=320)
    assert (
        box == pytest.approx(0.0375)
        and obj == pytest.approx(0.1875)
        and cls == pytest.approx(0.5 * 3 / 80 * 0.75)
    )
    levels = [torch.zeros(1, 3, s, s, 8) for s in (32, 16, 8)]  # 256×256 input
    res, _, _ = run(levels, [[0, 0, 0.5, 0.5, 0.2, 0.2]], params={"gain.imgsz": 640})
    assert res.normalizers["gain.obj"] == 1.0 and res.normalizers["gain.cls"] == pytest.approx(0.5 * 3 / 80)
    res2, _, _ = run(levels, [[0, 0, 0.5, 0.5, 0.2, 0.2]], params={"gain.rescale": False})
    assert res2.normalizers["gain.cls"] == 0.5 and res2.terms["cls"] == pytest.approx(
        res.terms["cls"] * 80 / 3
    )


def test_bbox_iou_xywh_by_hand() -> None:
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    b = torch.tensor([[2.0, 1.0, 2.0, 2.0]])
    # overlap 1×2 = 2, union 4 + 4 − 2 = 6 -> IoU 1/3; enclosing 3×2, diagonal² 13, centre distance² 1:
    # DIoU = 1/3 − 1/13; same aspect ratio -> CIoU = DIoU; GIoU = 1/3 − (6 − 6)/6 = 1/3
    assert float(bbox_iou_xywh(a, b, "iou")[0]) == pytest.approx(1 / 3, rel=1e-6)
    assert float(bbox_iou_xywh(a, b, "diou")[0]) == pytest.approx(1 / 3 - 1 / 13, rel=1e-6)
    assert float(bbox_iou_xywh(a, b, "ciou")[0]) == pytest.approx(1 / 3 - 1 / 13, rel=1e-6)
    assert float(bbox_iou_xywh(a, b, "giou")[0]) == pytest.approx(1 / 3, rel=1e-6)


def test_inputs_untouched_and_lazy_views() -> None:
    levels = [torch.randn(2, 3, s, s, 9) for s in (8, 4, 2)]
    before = [t.clone() for t in levels]
    res, _, _ = run(levels, [[0, 1, 0.4, 0.5, 0.3, 0.2], [1, 3, 0.7, 0.2, 0.1, 0.3]])
    assert all(torch.equal(a, b) for a, b in zip(levels, before, strict=True))
    assert isinstance(res.pred_boxes, LazyAnchorTensor) and not res.pred_boxes.is_materialized
    out = head.parse(levels)
    full_boxes, full_scores = head.decode_boxes(out), head.scores(out)
    for b, a in ((0, 0), (1, 200), (1, 3 * 64 + 5), (0, 3 * (64 + 16) + 11)):
        assert torch.allclose(res.pred_boxes[b, a], full_boxes[b, a], atol=1e-5)
        assert torch.allclose(res.pred_scores[b, a], full_scores[b, a])
        assert torch.equal(res.inputs["class logit"][b, a], head.flat(out, slice(5, None))[b, a])
    assert not res.pred_scores.is_materialized
    assert torch.equal(res.pred_scores.max(-1).values, full_scores.max(-1).values)
    assert res.pred_scores.is_materialized and res.pred_scores.shape == (2, 3 * 84, 4)


def test_decode_matches_yolov5_inference_formula() -> None:
    # Detect (eval): xy = (2σ(t) + cell − 0.5)·stride, wh = (2σ(t))²·anchor_px
    t = torch.zeros(1, 3, 2, 2, 6)
    t[0, 1, 1, 0, :4] = torch.tensor([2.0, -1.0, 0.5, -0.5])
    box = head.decode_boxes(head.parse([t], strides=(16.0,), anchors=[[[10, 13], [16, 30], [33, 23]]]))[
        0, 4 + 2
    ]
    s = torch.sigmoid(torch.tensor([2.0, -1.0, 0.5, -0.5]))
    cx, cy = (2 * s[0] + 0 - 0.5) * 16, (2 * s[1] + 1 - 0.5) * 16
    w, h = (2 * s[2]) ** 2 * 16, (2 * s[3]) ** 2 * 30
    assert torch.allclose(box, torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))


@pytest.mark.parametrize(
    ("outputs", "kwargs", "message"),
    [
        ([torch.zeros(1, 3, 8, 8)], {}, "expected (B, na, H, W, 5+nc)"),
        ([torch.zeros(1, 3, 8, 8, 5)], {}, "nc ≥ 1"),
        ([torch.zeros(1, 3, 8, 8, 7), torch.zeros(1, 2, 4, 4, 7)], {}, "disagree"),
        ([torch.zeros(1, 3, 8, 8, 7)] * 2, {"anchors": [[[1, 2]]]}, "anchors has shape"),
        ([torch.zeros(1, 2, 8, 8, 7)] * 3, {}, "no default anchors"),
        ([torch.zeros(1, 3, 8, 8, 7)], {"anchors": [[[-1, 2], [1, 1], [2, 2]]]}, "positive"),
        ([torch.zeros(1, 3, 8, 8, 7)], {"input_size": (60, 64)}, "does not divide"),
        ([torch.zeros(1, 3, 8, 8, 7)], {"nc": 3}, "--nc is 3"),
    ],
)
def test_bad_outputs_name_the_field(outputs, kwargs, message) -> None:
    with pytest.raises(BundleError, match=re.escape(message)):
        head.parse(outputs, **kwargs)


def test_bad_params() -> None:
    with pytest.raises(RecipeError, match="balance"):
        run([torch.zeros(1, 3, s, s, 7) for s in (8, 4, 2)], torch.zeros(0, 6), params={"balance": "4/1"})
    with pytest.raises(RecipeError, match="unknown parameter"):
        YoloV5({"gain.boxx": 1})
    with pytest.raises(RecipeError, match="anchor-based head"):
        b = bundle.from_object({"yolodbg": 1, "head": "yolox", "outputs": [torch.zeros(1, 7, 8, 8)]})
        YoloV5().input_layout(b)


def test_yaml_style_anchors_and_p6_defaults() -> None:
    flat = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    out = head.parse([torch.zeros(1, 3, s, s, 6) for s in (8, 4, 2)], anchors=flat)
    assert out.anchors_from == "bundle" and out.anchors_px[2, 2].tolist() == [373.0, 326.0]
    assert out.anchors_grid[0, 0].tolist() == [10 / 8, 13 / 8]
    out = head.parse([torch.zeros(1, 3, s, s, 6) for s in (8, 4, 2, 1)])
    assert out.anchors_from == "default" and out.strides == (8.0, 16.0, 32.0, 64.0)
    assert out.anchors_px[3, 2].tolist() == [925.0, 792.0]


# --------------------------------------------------------------------------------------------------- property


@st.composite
def scenes(draw):
    h, w = draw(st.sampled_from([(64, 64), (64, 96), (96, 32), (128, 64)]))
    bs = draw(st.integers(1, 3))
    nc = draw(st.sampled_from([1, 2, 5]))
    seed = draw(st.integers(0, 2**16))
    n = draw(st.integers(0, 8))
    rows = []
    for _ in range(n):
        b = draw(st.integers(0, bs - 1))
        cx = draw(st.sampled_from([0.0, 1.0, 0.5, 0.25])) if draw(st.booleans()) else draw(st.floats(0, 1))
        cy = draw(st.floats(0, 1))
        bw = draw(st.floats(0, 1.2))
        bh = draw(st.floats(0.001, 1.2))
        rows.append([b, draw(st.integers(0, nc - 1)), cx, cy, bw, bh])
    rows.sort(key=lambda r: r[0])
    params = draw(
        st.sampled_from([{}, {"sort_obj_iou": True}, {"label_smoothing": 0.1, "fl_gamma": 1.5}, {"gr": 0.5}])
    )
    return (h, w), bs, nc, seed, rows, params


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_conservation_and_invariants(scene) -> None:
    (h, w), bs, nc, seed, rows, params = scene
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(bs, 3, h // s, w // s, 5 + nc, generator=g) * 3 for s in (8, 16, 32)]
    res, _, bd = run(levels, torch.tensor(rows).view(-1, 6), params=params)
    assert not bd.violations
    assert all(math.isfinite(v) for v in res.terms.values())
    pos = res.positives
    assert sum(int(res.normalizers[f"positives.P{k}"]) for k in (3, 4, 5)) == len(pos.gt)
    # every positive cell is foreground and is owned by a GT that has a positive there
    assert bool(res.fg[pos.image, pos.anchor].all())
    owner = res.gt_of_anchor[pos.image, pos.anchor]
    same = (
        (pos.gt[:, None] == owner[None])
        & (pos.anchor[:, None] == pos.anchor[None])
        & (pos.image[:, None] == pos.image[None])
    )
    assert bool(same.any(0).all())
    assert int(res.fg.sum()) == len({(int(b), int(a)) for b, a in zip(pos.image, pos.anchor, strict=True)})
    assert float(res.target_score[~res.fg].abs().sum()) == 0.0
    # no positive -> a reason
    for g_row in bd.gts:
        if g_row.num_pos == 0:
            assert g_row.reason is not None and g_row.reason.code == "anchor_ratio"


# ------------------------------------------------------------------------------------------------ sample / CLI

SAMPLE = ROOT / "sample_data" / "yolov5n_val.pt"
COCO = ROOT / "sample_data" / "coco_val.json"


@pytest.mark.skipif(
    not (SAMPLE.exists() and COCO.exists()), reason="sample_data/yolov5n_val.pt not generated"
)
def test_sample_bundle_explain_shows_objectness_background() -> None:
    from click.testing import CliRunner

    from yolodbg.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["explain", str(SAMPLE), "--gt", str(COCO), "-r", "yolov5", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["recipe"]["name"] == "yolov5" and set(doc["terms"]) == {"box", "obj", "cls"}
    assert doc["negatives"] and all(set(n["terms"]) <= {"box", "obj", "cls"} for n in doc["negatives"])
    assert all(n["terms"]["obj"] > 0 for n in doc["negatives"])
    for t, v in doc["terms"].items():
        parts = sum(g["terms"][t] for g in doc["gts"]) + doc["background"]["terms"][t]
        assert parts == pytest.approx(v, rel=1e-5, abs=1e-7)
    r = runner.invoke(main, ["explain", str(SAMPLE), "--gt", str(COCO)], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "Background anchors by contribution" in r.output and "obj" in r.output


def test_api_replay_takes_anchors() -> None:
    from yolodbg.api import replay

    levels = [torch.randn(1, 3, s, s, 7) for s in (8, 4, 2)]
    batch = {
        "batch_idx": torch.zeros(1),
        "cls": torch.ones(1),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.2]]),
    }
    anchors = [
        [[12.5, 9.0], [20.0, 31.5], [40.0, 22.0]],
        [[33, 70], [70, 40], [64, 128]],
        [[120, 96], [160, 200], [380, 330]],
    ]
    custom = replay(levels, batch, recipe="yolov5", anchors=anchors)
    default = replay(levels, batch, recipe="yolov5")
    assert not any("default anchors" in w for w in custom.result.warnings)
    assert any("default anchors" in w for w in default.result.warnings)
    assert custom.terms["box"] != default.terms["box"]
    assert int(custom.fg.sum()) > 0 and set(custom.gt_index[custom.fg].tolist()) == {0}


def test_lazy_anchor_tensor_protocol() -> None:
    full = torch.arange(24.0).view(2, 4, 3)
    calls = []
    lazy = LazyAnchorTensor((2, 4, 3), lambda b, a: full[b, a] + 0, lambda: calls.append(1) or full.clone())
    assert torch.equal(lazy[1, -1], full[1, 3]) and torch.equal(lazy[0, 2, 1:], full[0, 2, 1:]) and not calls
    with pytest.raises(IndexError):
        lazy[2, 0]
    assert lazy.shape == (2, 4, 3) and len(lazy) == 2 and lazy.ndim == 3 and not calls
    assert bool(torch.isfinite(lazy).all()) and calls == [
        1
    ]  # torch functions see the full tensor, built once
    assert (
        torch.equal(lazy * 2, full * 2) and torch.equal(lazy[:, 1], full[:, 1]) and lazy.dtype == full.dtype
    )
    assert calls == [1] and lazy.is_materialized


def test_winner_follows_the_value_a_cell_holds() -> None:
    # Two identical GTs hit the same cells; on the CPU the later row's write wins. Should a cell hold the
    # earlier write instead (a multi-threaded index_put), the attribution follows the value it holds.
    from dataclasses import replace

    from yolodbg.assigners.yolov5 import match_level, target_rows
    from yolodbg.recipes.yolov5_loss import V5LossParams, level_terms, winners

    rows = target_rows(torch.zeros(2), torch.tensor([0, 1]), torch.tensor([[0.55, 0.55, 0.3, 0.3]] * 2))
    m = match_level(rows, (8, 8), torch.tensor([[2.0, 2.0]]), 4.0, 0.5)
    pi = torch.randn(1, 1, 8, 8, 7, generator=torch.Generator().manual_seed(0))
    t = level_terms(pi, m, V5LossParams())
    n = len(m)
    assert n == 6 and m.gt.tolist() == [0, 1, 0, 1, 0, 1]  # offset-major, then GT: the GT-1 write comes last
    assert m.gt[winners(m, t)].tolist() == [1] * n
    # make the first positive's cell hold a value only GT 0's write produced (GT 1's differs: other classes
    # do not change the IoU, so perturb it)
    tampered_value = t.write_value.clone()
    tampered_value[1] += 0.125  # GT 1's write into the centre cell
    tobj = t.obj_target.clone()
    tobj[0, 0, int(m.gj[0]), int(m.gi[0])] = tampered_value[0]
    w = winners(m, replace(t, write_value=tampered_value, obj_target=tobj))
    assert m.gt[w].tolist()[:2] == [0, 0] and m.gt[w].tolist()[2:] == [1, 1, 1, 1]


def test_lazy_rows_by_index_vectors_stay_lazy_and_equal_the_full_tensor() -> None:
    levels = [torch.randn(2, 3, s, s, 9) for s in (8, 4, 2)]
    res, _, _ = run(levels, [[0, 1, 0.4, 0.5, 0.3, 0.2], [1, 3, 0.7, 0.2, 0.1, 0.3]])
    b, a = torch.tensor([1, 0, 1]), torch.tensor([5, 251, 0])
    rows = res.pred_boxes[b, a]
    assert not res.pred_boxes.is_materialized
    assert torch.equal(rows, res.pred_boxes.materialize()[b, a])
    assert res.pred_scores[b[:0], a[:0]].shape == (0, res.pred_scores.shape[2])
