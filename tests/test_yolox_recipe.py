"""The ``yolox`` and ``yolox-main`` recipes without YOLOX: hand-computed cases, edge cases, bad input,
conservation as a property, the registry and the command line.

Most hand cases use one level of stride 16 on a 64×64 input: 4×4 cells with centres at 8, 24, 40, 56 px,
anchor index = 4·row + column. Every anchor predicts the box centred at (32, 32) with side 16 px
(raw ``tx = 2 − col``, ``ty = 2 − row``, ``tw = th = 0``); the GT is centred at (32, 32) with side 32 px, so
every IoU is 16²/32² = 0.25 exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import assert_valid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import breakdown, bundle, groundtruth
from yolodbg.api import replay
from yolodbg.cli import main
from yolodbg.errors import BundleError, RecipeError
from yolodbg.heads import yolox as head
from yolodbg.recipes import get_recipe, list_recipes, recipe_for_head
from yolodbg.recipes.yolox_replay import iou_sq_or_giou_loss, yolox_labels

LN2 = math.log(2.0)


def bce(x: float, t: float) -> float:
    """BCE with logits, by hand."""
    return max(x, 0.0) - x * t + math.log1p(math.exp(-abs(x)))


def grid_level(
    obj: dict[int, float] | None = None, nc: int = 1, cls: tuple[float, ...] = (0.0,)
) -> torch.Tensor:
    """The (1, 5+nc, 4, 4) map described in the module docstring; ``obj`` maps anchor -> logit (default -1)."""
    t = torch.zeros(1, 5 + nc, 4, 4)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    t[0, 0], t[0, 1] = 2 - cols, 2 - rows
    t[0, 4] = -1.0
    for a, v in (obj or {}).items():
        t[0, 4, a // 4, a % 4] = v
    for c, v in enumerate(cls):
        t[0, 5 + c] = v
    return t


GT = [0.5, 0.5, 0.5, 0.5]  # centre (32, 32), side 32 on 64×64
OBJ = {
    5: 3.0,
    6: 2.0,
    9: 1.0,
    10: 0.0,
}  # the four anchors inside the GT box: cells (1,1), (2,1), (1,2), (2,2)


def targets(rows) -> dict:
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return {"batch_idx": t[:, 0], "cls": t[:, 1], "bboxes": t[:, 2:]}


def run(levels, rows, recipe="yolox", size=(64, 64), strides=(16.0,), **params):
    return replay(
        levels,
        targets(rows),
        recipe=recipe,
        params=params or None,
        input_size=size,
        strides=strides,
        head="yolox",
    )


# ---------------------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------------------


def test_decode_from_cell_corner_and_anchor_centres() -> None:
    t = torch.zeros(1, 7, 2, 3)
    t[0, 0, 1, 2], t[0, 1, 1, 2], t[0, 2, 1, 2], t[0, 3, 1, 2] = 0.5, 0.25, 0.0, math.log(2.0)
    out = head.parse([t], strides=(8.0,), input_size=(16, 24))
    a = 1 * 3 + 2  # row 1, column 2: y outer, x inner
    cx, cy, w, h = out.outputs[0, a, :4].tolist()
    assert (cx, cy) == ((0.5 + 2) * 8, (0.25 + 1) * 8)  # cell corner + offset, no +0.5
    assert w == 8.0 and h == pytest.approx(16.0)
    anchors = head.anchors(out)
    assert anchors.points[a].tolist() == [(2 + 0.5) * 8, (1 + 0.5) * 8]  # the centre prior uses +0.5
    assert out.nc == 2 and out.x_shifts[a] == 2 and out.y_shifts[a] == 1


def test_odd_input_size_keeps_the_real_size() -> None:
    shapes = [(26, 42), (13, 21), (7, 11)]  # a 204×332 input through stride-2 convolutions
    levels = [torch.zeros(1, 6, h, w) for h, w in shapes]
    assert head.parse(levels, input_size=(204, 332)).input_size == (204, 332)
    assert head.parse(levels).input_size == (208, 336)
    with pytest.raises(BundleError, match="does not fit the first level"):
        head.parse(levels, input_size=(180, 332))


@pytest.mark.parametrize(
    ("outputs", "match"),
    [
        (torch.zeros(1, 8, 4, 4), "list of per-level"),
        ([torch.zeros(1, 5, 4, 4)], "5 channels"),
        ([torch.zeros(1, 8, 4, 4), torch.zeros(1, 9, 2, 2)], "disagree"),
        ([torch.zeros(8, 4, 4)], "expected \\(B, 5\\+nc, H, W\\)"),
        ([torch.zeros(1, 8, 4, 4, dtype=torch.long)], "floating point"),
    ],
)
def test_bad_outputs(outputs, match) -> None:
    with pytest.raises(BundleError, match=match):
        head.parse(outputs)


def test_nc_and_strides_checked() -> None:
    with pytest.raises(BundleError, match="--nc 4"):
        head.parse([torch.zeros(1, 8, 4, 4)], nc=4)
    with pytest.raises(BundleError, match="2 strides given for 1 levels"):
        head.parse([torch.zeros(1, 8, 4, 4)], strides=(8.0, 16.0))


def test_wrong_head_for_the_recipe() -> None:
    out = {
        "boxes": torch.zeros(1, 64, 21),
        "scores": torch.zeros(1, 2, 21),
        "feats": [torch.zeros(1, 0, 4, 4)],
    }
    with pytest.raises(RecipeError, match="holds a ultralytics head"):
        replay(out, targets([]), recipe="yolox", head="ultralytics")


# ---------------------------------------------------------------------------------------------------------------
# hand-computed SimOTA and losses
# ---------------------------------------------------------------------------------------------------------------


def test_release_hand_case() -> None:
    """Candidates: all 16 anchors (the 2.5-stride square spans −8..72 px); prior: the 4 inside the box.
    k = int(10 × 0.25) = 2; the two cheapest are the prior anchors of largest objectness, 5 and 6."""
    res = run([grid_level(OBJ)], [(0, 0, *GT)])
    assert res.fg[0].nonzero().flatten().tolist() == [5, 6]
    iou = 5.0 * 2 * (1 - 0.25**2) / 2  # 5 · Σ (1 − IoU²) / num_fg = 4.6875
    cls = 2 * LN2 / 2  # logit 0: BCE = ln 2 whatever the target (0.25)
    negatives = bce(1.0, 0) + bce(0.0, 0) + 12 * bce(-1.0, 0)
    obj = (bce(3.0, 1) + bce(2.0, 1) + negatives) / 2
    assert res.terms["iou"] == pytest.approx(iou, rel=1e-6)
    assert res.terms["cls"] == pytest.approx(cls, rel=1e-6)
    assert res.terms["obj"] == pytest.approx(obj, rel=1e-6)
    assert res.terms["l1"] == 0.0
    assert res.objective == pytest.approx(iou + obj + cls, rel=1e-6)  # 8.3512: no batch-size factor
    r = res.result
    assert r.normalizers["num_fg"] == 2.0
    assert r.gt_details[0] == {
        "dynamic_k": 2, "topk_iou_sum": 2.5, "num_candidates": 16, "num_prior": 4, "num_selected": 2,
        "num_kept": 2, "num_lost": 0, "lost_to": None, "num_gained": 0,
    }  # fmt: skip
    assert r.gt_reasons[0].code == "dynamic_k" and "k = 2" in r.gt_reasons[0].detail
    assert res.target_score[0, 5] == 0.25 and res.target_score.sum() == 0.5  # the class target is the IoU
    assert not bool(r.positives.flags["outside_prior"].any())


def test_main_hand_case() -> None:
    """Main: the 1.5-stride square spans 8..56 px, strictly: only the 4 centres at 24 and 40 are candidates.
    k = int(min(10, 4) × 0.25) = int(1.0) = 1: only anchor 5."""
    res = run([grid_level(OBJ)], [(0, 0, *GT)], recipe="yolox-main")
    assert res.fg[0].nonzero().flatten().tolist() == [5]
    obj = bce(3.0, 1) + bce(2.0, 0) + bce(1.0, 0) + bce(0.0, 0) + 12 * bce(-1.0, 0)
    assert res.terms["iou"] == pytest.approx(5.0 * (1 - 0.0625), rel=1e-6)
    assert res.terms["obj"] == pytest.approx(obj, rel=1e-6)
    assert res.terms["cls"] == pytest.approx(LN2, rel=1e-6)
    assert res.result.gt_details[0]["num_candidates"] == 4
    assert res.result.gt_details[0]["dynamic_k"] == 1


def test_l1_gain_and_giou() -> None:
    """L1 target of anchor (col, row): (32/16 − col, 32/16 − row, ln(2 + 1e-8), ln 2); the raw prediction is
    (2 − col, 2 − row, 0, 0), so each positive costs 2 ln 2 and the term is 2 · 2 ln 2 / 2."""
    base = run([grid_level(OBJ)], [(0, 0, *GT)])
    l1 = run([grid_level(OBJ)], [(0, 0, *GT)], use_l1=True)
    assert l1.terms["l1"] == pytest.approx(2 * LN2, rel=1e-6)
    assert l1.objective == pytest.approx(base.objective + 2 * LN2, rel=1e-6)
    assert {k: v for k, v in l1.terms.items() if k != "l1"} == {
        k: v for k, v in base.terms.items() if k != "l1"
    }
    gained = run([grid_level(OBJ)], [(0, 0, *GT)], **{"gain.iou": 10.0})
    assert gained.terms["iou"] == pytest.approx(2 * base.terms["iou"], rel=1e-6)
    # the predicted box lies inside the GT, so the enclosing box is the GT: GIoU = IoU, loss 1 − 0.25 each
    giou = run([grid_level(OBJ)], [(0, 0, *GT)], box="giou")
    assert giou.terms["iou"] == pytest.approx(5.0 * 0.75, rel=1e-6)


def test_duplicate_gt_loses_every_anchor() -> None:
    """Two identical GTs of one class: equal costs, so each conflict goes to the first (torch.min's first
    index) and the second keeps nothing."""
    res = run([grid_level(OBJ)], [(0, 0, *GT), (0, 0, *GT)])
    r = res.result
    assert res.fg[0].nonzero().flatten().tolist() == [5, 6]
    assert r.gt_of_anchor[0, [5, 6]].tolist() == [0, 0]
    assert r.gt_reasons[1].code == "lost_conflict" and r.gt_reasons[1].other_gt == 0
    assert r.gt_details[1]["num_lost"] == 2 and r.gt_details[1]["lost_to"] == 0
    assert r.normalizers["num_fg"] == 2.0


def test_box_between_anchor_centres_has_no_prior() -> None:
    """A 4 px box centred on a cell corner holds no anchor centre: under the release rule no pair is in the
    prior (box ∩ centre square), every pair carries the 1e5 penalty, and the GT still gets k = 1 anchor."""
    res = run([grid_level(OBJ)], [(0, 0, 0.5, 0.5, 4 / 64, 4 / 64)])
    r = res.result
    assert r.gt_reasons[0].code == "no_prior"
    assert int(res.fg.sum()) == 1 and bool(r.positives.flags["outside_prior"].all())
    assert float(r.positives.align[0]) > 1e5  # the pair's cost includes the penalty
    main = run([grid_level(OBJ)], [(0, 0, 0.5, 0.5, 4 / 64, 4 / 64)], recipe="yolox-main")
    assert main.result.gt_reasons[0].code == "dynamic_k"  # main: the centre square alone is the prior


def test_zero_row_is_used_and_a_real_gt_dropped() -> None:
    """YOLOX counts label rows with a positive sum (1 here) and takes that many *leading* rows: the class-0
    all-zero row is used, the real GT after it never reaches the loss."""
    res = run([grid_level(OBJ)], [(0, 0, 0, 0, 0, 0), (0, 0, *GT)])
    r = res.result
    assert r.gt_reasons[1].code == "not_counted" and 1 not in r.gt_details
    assert r.gt_reasons[0].code == "zero_row_used"
    assert int(res.fg.sum()) == 1 and int(r.gt_of_anchor[0][res.fg[0]]) == 0
    assert r.normalizers["num_gts"] == 1.0


def test_gt_outside_every_candidate_is_a_clear_error() -> None:
    with pytest.raises(RecipeError, match="image 0: none of its 1 GTs"):
        run([grid_level(OBJ)], [(0, 0, 5.0, 5.0, 0.1, 0.1)])


def test_empty_batch_and_empty_images() -> None:
    """No GT: only the objectness term, Σ BCE(obj, 0) over all anchors divided by max(0, 1)."""
    lv = [grid_level(OBJ)]
    res = run(lv, [])
    want = float(F.binary_cross_entropy_with_logits(lv[0][0, 4], torch.zeros(4, 4), reduction="sum"))
    assert res.terms == {"iou": 0.0, "obj": pytest.approx(want, rel=1e-6), "cls": 0.0, "l1": 0.0}
    assert not bool(res.fg.any()) and res.result.gt_reasons == {}
    two = torch.cat([grid_level(OBJ), grid_level(OBJ)])
    mixed = run([two], [(1, 0, *GT)])
    assert not bool(mixed.fg[0].any()) and mixed.fg[1].nonzero().flatten().tolist() == [5, 6]


def test_half_precision_outputs_warn_and_match_float32() -> None:
    lv = grid_level(OBJ).half()
    res = run([lv], [(0, 0, *GT)])
    ref = run([lv.float()], [(0, 0, *GT)])
    assert res.terms == ref.terms and any("float16" in w for w in res.result.warnings)


def test_labels_are_float32_pixels_in_row_order() -> None:
    t = groundtruth.from_batch(
        targets([(1, 2, 0.1, 0.2, 0.3, 0.4), (0, 1, 0.5, 0.5, 0.25, 0.5)]), 2, (64, 96), 3
    )
    labels, rows = yolox_labels(t)
    assert labels.shape == (2, 1, 5) and labels.dtype == torch.float32
    scale = torch.tensor([96.0, 64.0, 96.0, 64.0])
    assert torch.equal(labels[1, 0, 1:], torch.tensor([0.1, 0.2, 0.3, 0.4]) * scale)
    assert labels[0, 0].tolist() == [1.0, 48.0, 32.0, 24.0, 32.0] and rows.tolist() == [[0], [1]]


def test_iou_sq_or_giou_loss_by_hand() -> None:
    # unit squares offset by half a side: inter 0.5, union 1.5, IoU 1/3 -> 1 − 1/9; disjoint -> 1
    pred = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]])
    gt = torch.tensor([[1.0, 0.5, 1.0, 1.0], [5.0, 5.0, 1.0, 1.0]])
    assert iou_sq_or_giou_loss(pred, gt).tolist() == pytest.approx([1 - 1 / 9, 1.0])
    # GIoU: the first pair's enclosing box (0..1.5 × 0..1) is their union, so GIoU = IoU -> 1 − 1/3; the disjoint
    # pair is enclosed by 0..5.5 × 0..5.5 = 30.25 with union 2 -> GIoU = 0 − 28.25/30.25
    assert iou_sq_or_giou_loss(pred, gt, "giou").tolist() == pytest.approx([1 - 1 / 3, 1 + 28.25 / 30.25])


# ---------------------------------------------------------------------------------------------------------------
# properties: conservation and bookkeeping on random scenes
# ---------------------------------------------------------------------------------------------------------------

box = st.tuples(
    st.integers(0, 2),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.95),
    st.floats(0.01, 0.9),
    st.floats(0.01, 0.9),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boxes=st.lists(st.tuples(st.integers(0, 1), box), max_size=12),
    seed=st.integers(0, 10_000),
    recipe=st.sampled_from(["yolox", "yolox-main"]),
    use_l1=st.booleans(),
)
def test_conservation_property(boxes, seed, recipe, use_l1) -> None:
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(2, 8, 64 // s, 96 // s, generator=g) for s in (8, 16, 32)]
    rows = sorted((b, c, x, y, w, h) for b, (c, x, y, w, h) in boxes)
    res = replay(
        levels, targets(rows), recipe=recipe, params={"use_l1": use_l1}, input_size=(64, 96), head="yolox"
    )
    r = res.result
    bd = breakdown.build(r, res.targets)
    assert bd.violations == []
    for term, value in r.terms.items():
        assert float(r.ledger[term].values.sum()) == pytest.approx(value, rel=1e-5, abs=1e-7)
    assert sum(d["num_kept"] for d in r.gt_details.values()) == int(r.fg.sum()) == len(r.positives.image)
    # a GT keeps its k selected anchors minus those lost in conflicts, plus anchors that several *other* GTs
    # selected and that went to it as the cheapest of all GTs (SimOTA resolves conflicts over every GT)
    for d in r.gt_details.values():
        assert d["dynamic_k"] >= 1 and d["num_selected"] == d["dynamic_k"]
        assert d["num_kept"] == d["num_selected"] - d["num_lost"] + d["num_gained"]
    assert set(r.gt_reasons) == set(range(len(rows)))
    assert r.objective == pytest.approx(sum(r.terms.values()), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# registry and command line
# ---------------------------------------------------------------------------------------------------------------


def test_registry() -> None:
    assert {"yolox", "yolox-main"} <= set(list_recipes())
    assert recipe_for_head("yolox").name == "yolox"
    rec = get_recipe("yolox-main:use_l1=true,assigner.candidate_k=8")
    assert rec.spec() == "yolox-main:use_l1=True,assigner.candidate_k=8"
    assert rec.simota_params().center_radius == 1.5 and rec.simota_params().penalty == 1e6
    assert get_recipe("yolox").simota_params().center_radius == 2.5
    with pytest.raises(RecipeError, match="box"):
        get_recipe("yolox:box=ciou")


def test_cli_explain_json(tmp_path) -> None:
    levels = [
        torch.randn(2, 7, 64 // s, 96 // s, generator=torch.Generator().manual_seed(s)) for s in (8, 16, 32)
    ]
    rows = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 0, 0.2, 0.3, 0.1, 0.2), (1, 1, 0.7, 0.6, 0.3, 0.5)]
    path = bundle.save(tmp_path / "x.pt", levels, head="yolox", input_size=[64, 96], targets=targets(rows))
    res = CliRunner().invoke(main, ["explain", str(path), "--json", "-"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["recipe"]["name"] == "yolox" and set(doc["terms"]) == {"iou", "obj", "cls", "l1"}
    assert len(doc["gts"]) == 3 and all("dynamic_k" in g["details"] for g in doc["gts"])
    assert_valid(doc, "yolodbg.explain/1")
    text = CliRunner().invoke(main, ["explain", str(path), "-r", "yolox-main"], env={"COLUMNS": "160"})
    assert text.exit_code == 0 and "num_fg" in text.output


def test_sample_bundle_matches_yolox() -> None:
    """sample_data/yolox_val.pt (a trained YOLOX-nano head on the sample images, made by
    sample_data/make_yolox_sample.py) replays to the loss YOLOX 0.3.0 computed for it, recorded in its meta."""
    from yolodbg.explain import explain

    root = Path(__file__).resolve().parents[1] / "sample_data"
    b = bundle.load(root / "yolox_val.pt")
    ex = explain(b, gt=root / "coco_val.json")
    ref = b.meta["yolox_reference"]
    assert ex.result.objective == pytest.approx(ref["total"], rel=1e-5)
    for term in ("iou", "obj", "cls", "l1"):
        assert ex.result.terms[term] == pytest.approx(ref[term], rel=1e-5, abs=1e-9)
    assert ex.result.normalizers["num_fg_per_gt"] == pytest.approx(ref["num_fg_per_gt"], rel=1e-6)
    assert ex.breakdown.violations == [] and ex.nonfinite is None
    assert float(ex.result.positives.iou.mean()) > 0.5  # a trained model: its positives overlap their GT
