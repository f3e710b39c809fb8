"""``compare``: hand-built scenes whose assignment changes are known, self-comparison, bundles, CLI."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output
from rich.console import Console

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.compare import compare_bundles, compare_recipes
from yolodbg.documents.compare import compare_doc
from yolodbg.errors import InputError, RecipeError
from yolodbg.recipes import get_recipe
from yolodbg.render.compare import render_compare

# One level, stride 8, on a 32×32 input: 4×4 anchors with centres x, y ∈ {4, 12, 20, 28}, row-major (y outer).
CENTRES = [(4.0 + 8 * (a % 4), 4.0 + 8 * (a // 4)) for a in range(16)]
REG_MAX = 16


def _dfl_logits(dist: list[float]) -> torch.Tensor:
    """``(4 * 16,)`` box logits whose softmax expectation is exactly ``dist`` (each k + 0.5 grid units):
    two equal logits on bins k and k + 1, the rest at −1e4 (exp underflows to 0)."""
    out = torch.full((4, REG_MAX), -1e4)
    for side, d in enumerate(dist):
        k = math.floor(d)
        assert d - k == 0.5, d
        out[side, k] = out[side, k + 1] = 0.0
    return out.reshape(-1)


def _predicting(boxes_of_anchor: list[tuple[float, float, float, float]]) -> torch.Tensor:
    """``(64, 16)`` box logits: anchor a predicts ``boxes_of_anchor[a]`` (xyxy px, holding its centre)."""
    cols = []
    for (x, y), (x1, y1, x2, y2) in zip(CENTRES, boxes_of_anchor, strict=True):
        cols.append(_dfl_logits([(x - x1) / 8, (y - y1) / 8, (x2 - x) / 8, (y2 - y) / 8]))
    return torch.stack(cols, 1)


def _save(path, box_logits: torch.Tensor, cls_prob: torch.Tensor, gts, image_id=1):
    """A one-image bundle with its own targets; ``cls_prob`` (16,) is the class-0 score of each anchor."""
    scores = torch.stack((torch.logit(cls_prob), torch.full((16,), -8.0)))  # (nc=2, N)
    out = {"boxes": box_logits[None], "scores": scores[None], "feats": [torch.empty(1, 0, 4, 4)]}
    rows = [
        (0, c, (x1 + x2) / 64, (y1 + y2) / 64, (x2 - x1) / 32, (y2 - y1) / 32) for c, x1, y1, x2, y2 in gts
    ]
    images = [{"image_id": image_id}]
    return bundle.save(path, out, input_size=[32, 32], strides=[8], targets=batch(rows), images=images)


def _cell(a: int) -> tuple[float, float, float, float]:
    x, y = CENTRES[a]
    return (x - 4, y - 4, x + 4, y + 4)


def _inside(a: int, box) -> bool:
    x, y = CENTRES[a]
    return box[0] < x < box[2] and box[1] < y < box[3]


@pytest.fixture
def topk_bundle(tmp_path):
    """One GT covering the whole input; every anchor predicts it exactly (CIoU 1), scores .2 … .95 rising with
    the anchor index, so the task-aligned metric ranks anchors by score: top-10 = anchors 6..15."""
    whole = (0.0, 0.0, 32.0, 32.0)
    path = _save(tmp_path / "k.pt", _predicting([whole] * 16), torch.linspace(0.2, 0.95, 16), [(0, *whole)])
    return bundle.load(path)


def test_topk_13_adds_exactly_the_next_three_anchors(topk_bundle):
    cmp = compare_recipes(topk_bundle, [get_recipe("yolov8"), get_recipe("yolov8:assigner.topk=13")])
    a = cmp.assignment[0]
    fg10 = cmp.columns[0].explanation.result.fg[0].nonzero().flatten().tolist()
    fg13 = cmp.columns[1].explanation.result.fg[0].nonzero().flatten().tolist()
    assert fg10 == list(range(6, 16)) and fg13 == list(range(3, 16))
    # 3 anchors (3, 4, 5) more, none lost, none switched, the GT goes from 10 to 13 positives
    assert (a.added, a.removed, a.switched, a.unchanged, a.same_params) == (3, 0, 0, False, False)
    assert [(g.ident, n0, n1) for g, n0, n1 in a.pos_changed] == [("#0", 10, 13)]
    assert not a.became_orphans and not a.stopped_orphans
    assert not cmp.hints and not any("purely the loss" in n for n in cmp.notes)
    text = _render(cmp)
    assert (
        "Assignment B vs A: 3 positives added, 0 removed, 0 switched GT\n"
        "  GTs: 1 with another positive count, 0 became orphans, 0 stopped being orphans" in text
    )
    # the per-GT change is the whole batch change (one GT) minus the background's (float32 terms, float64 ledger)
    g = cmp.gts[0]
    bg = [sum(c.explanation.breakdown.background[t] for t in cmp.terms) for c in cmp.columns]
    assert g.delta[1] == pytest.approx(cmp.deltas[1]["total"].abs - (bg[1] - bg[0]), abs=1e-5)


def test_recipe_against_itself_has_zero_deltas(topk_bundle):
    cmp = compare_recipes(topk_bundle, [get_recipe("yolov8:box=siou"), get_recipe("yolov8:box=siou")])
    assert cmp.deltas[1] and cmp.gts, "nothing compared"
    assert all(d.abs == 0 and d.rel == 0 for d in cmp.deltas[1].values())
    assert all(g.delta == (0.0, 0.0) for g in cmp.gts)
    a = cmp.assignment[0]
    assert a.unchanged and a.same_params and (a.added, a.removed, a.switched) == (0, 0, 0)
    assert cmp.notes == ["yolov8:box=siou@1: assignment unchanged: the difference is purely the loss"]
    assert not cmp.hints and not cmp.violations
    assert [c.label for c in cmp.columns] == ["yolov8:box=siou@0", "yolov8:box=siou@1"]


def test_loss_only_variant_keeps_the_assignment_and_hints_the_gain():
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2)
    rows = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "targets": batch(rows)})
    specs = ["yolov8", "yolov8:box=siou,cls=varifocal", "yolov8:cls=focal,cls.gamma=1.5"]
    cmp = compare_recipes(b, [get_recipe(s) for s in specs])
    assert cmp.assignment and all(a.unchanged and a.same_params for a in cmp.assignment)
    assert (
        len([n for n in cmp.notes if n.endswith("assignment unchanged: the difference is purely the loss")])
        == 2
    )
    hints = {(h.column, h.term): h for h in cmp.hints}
    assert set(hints) == {(1, "box"), (1, "cls"), (2, "cls")}
    assert (hints[1, "cls"].base_form, hints[1, "cls"].form) == ("bce", "varifocal")
    assert hints[2, "cls"].form == "focal(gamma=1.5)" and hints[2, "cls"].gain_key == "gain.cls"
    # the suggested gain gives back BCE's magnitude on these inputs
    h = hints[1, "cls"]
    fixed = compare_recipes(
        b, [get_recipe("yolov8"), get_recipe(f"yolov8:cls=varifocal,gain.cls={h.suggested!r}")]
    )
    assert fixed.deltas[1]["cls"].rel == pytest.approx(0, abs=1e-6)
    text = _render(cmp)
    assert f"gain.cls={h.suggested:.4g} (now 0.5) restores the bce magnitude on these inputs" in text
    assert "Why the numbers differ" not in text  # one recipe, same gains


def _two_gt_bundle(path, shared_to: int):
    """GT 0 = [0,0,24,24] and GT 1 = [8,8,32,32] share the anchors at (12|20, 12|20). Every anchor inside a GT predicts
    that GT's box; the shared ones predict GT ``shared_to``'s box, so they go to it (larger CIoU wins a conflict)."""
    gt0, gt1 = (0.0, 0.0, 24.0, 24.0), (8.0, 8.0, 32.0, 32.0)
    own = []
    for a in range(16):
        in0, in1 = _inside(a, gt0), _inside(a, gt1)
        if in0 and in1:
            own.append((gt0, gt1)[shared_to])
        else:
            own.append(gt0 if in0 else gt1 if in1 else _cell(a))
    return _save(path, _predicting(own), torch.full((16,), 0.5), [(0, *gt0), (0, *gt1)])


def test_two_checkpoints_switch_four_anchors(tmp_path):
    a = bundle.load(_two_gt_bundle(tmp_path / "a.pt", shared_to=0))
    b = bundle.load(_two_gt_bundle(tmp_path / "b.pt", shared_to=1))
    cmp = compare_bundles(a, b, get_recipe("yolov8"))
    d = cmp.assignment[0]
    # the 4 shared anchors move from GT 0 to GT 1: GT 0 9 -> 5 positives, GT 1 5 -> 9
    assert (d.switched, d.added, d.removed, d.same_params) == (4, 0, 0, None)
    assert sorted((g.ident, n0, n1) for g, n0, n1 in d.pos_changed) == [("#0", 9, 5), ("#1", 5, 9)]
    assert {(s.before, s.after) for s in d.switches} == {("#0", "#1")}
    assert sorted(s.anchor["cell"] for s in d.switches) == [[1, 1], [1, 2], [2, 1], [2, 2]]
    assert [c.label for c in cmp.columns] == ["a.pt", "b.pt"] and cmp.mode == "bundles"
    doc = json.loads(json.dumps(compare_doc(cmp)))
    assert doc["assignment"][0]["switched_anchors"] == 4
    assert {(r["gt_index"], r["before"], r["after"]) for r in doc["assignment"][0]["pos_count_changed"]} == {
        (0, 9, 5),
        (1, 5, 9),
    }


def _coco_bundles(tmp_path, coco_file, ids_b=(9, 7)):
    out = ultra_output(bs=2, size=(128, 128), nc=3, seed=4)
    anns = [
        {"id": 11, "image_id": 7, "category_id": 1, "bbox": [20, 10, 60, 40], "area": 2400, "iscrowd": 0},
        {"id": 12, "image_id": 7, "category_id": 3, "bbox": [120, 30, 50, 50], "area": 2500, "iscrowd": 0},
        {"id": 13, "image_id": 9, "category_id": 5, "bbox": [5, 5, 150, 80], "area": 12000, "iscrowd": 0},
    ]
    gt = coco_file(anns)
    a = bundle.save(tmp_path / "a.pt", out, input_size=[128, 128], images=[{"image_id": 7}, {"image_id": 9}])
    order = [0, 1] if list(ids_b)[:1] == [7] else [1, 0]
    permuted = {"boxes": out["boxes"][order], "scores": out["scores"][order], "feats": out["feats"]}
    b = bundle.save(
        tmp_path / "b.pt", permuted, input_size=[128, 128], images=[{"image_id": i} for i in ids_b]
    )
    return a, b, gt


def test_bundles_in_another_order_are_matched_by_image_and_annotation_id(tmp_path, coco_file):
    pa, pb, gt = _coco_bundles(tmp_path, coco_file)
    cmp = compare_bundles(bundle.load(pa), bundle.load(pb), get_recipe("yolov8"), gt)
    assert {g.key for g in cmp.gts} == {(7, "ann", 11), (7, "ann", 12), (9, "ann", 13)}
    assert all(abs(g.delta[1]) <= 1e-6 * g.totals[0] for g in cmp.gts)  # float32 sums in another order
    assert cmp.deltas[1] and all(abs(d.rel or 0) < 1e-6 for d in cmp.deltas[1].values())
    assert cmp.assignment[0].unchanged and cmp.assignment[0].anchors_comparable


def test_bundles_of_different_images_are_refused(tmp_path, coco_file):
    pa, pb, gt = _coco_bundles(tmp_path, coco_file, ids_b=(7, 8))
    with pytest.raises(
        InputError, match=r"cover different images \(only in the first: 9; only in the second: 8\)"
    ):
        compare_bundles(bundle.load(pa), bundle.load(pb), get_recipe("yolov8"), gt)


def test_cross_family_works_on_an_end_to_end_output_and_is_refused_otherwise():
    out = {
        "one2many": ultra_output(bs=2, size=(96, 96), seed=7),
        "one2one": ultra_output(bs=2, size=(96, 96), seed=8),
    }
    rows = [(0, 1, 0.5, 0.5, 0.4, 0.3), (1, 0, 0.7, 0.6, 0.3, 0.5)]
    b = bundle.from_object({"yolodbg": 1, "head": "ultralytics", "outputs": out, "targets": batch(rows)})
    cmp = compare_recipes(b, [get_recipe("yolo26"), get_recipe("yolov8:branch=one2many")])
    # v8DetectionLoss on the one-to-many branch = yolo26's o2m.* terms; the positives are the same
    for t in ("box", "cls", "dfl"):
        assert (
            cmp.columns[1].explanation.result.terms[t]
            == cmp.columns[0].explanation.result.extra_terms[f"o2m.{t}"]
        )
    assert cmp.assignment[0].unchanged and cmp.assignment[0].same_params is None
    assert any("the same positives on this batch" in n for n in cmp.notes)
    why = dict(cmp.why)
    assert why["batch multiply"][1] == "× batch size 2" and why["batch multiply"][0].startswith(
        "objective = "
    )
    assert "Why the numbers differ" in _render(cmp)
    with pytest.raises(RecipeError, match=r"compare column B \(yolov8\): .*yolov8:branch=one2many"):
        compare_recipes(b, [get_recipe("yolo26"), get_recipe("yolov8")])
    with pytest.raises(RecipeError, match=r"compare column B \(yolox\): "):
        compare_recipes(b, [get_recipe("yolo26"), get_recipe("yolox")])


def test_recipes_without_the_new_keys_compare_with_their_own():
    # YOLOX documents box = iou | giou (logged as the "iou" term) and its SimOTA keys, nothing else
    g = torch.Generator().manual_seed(0)
    out = [torch.randn(2, 5 + 3, 128 // s, 128 // s, generator=g) for s in (8, 16, 32)]
    rows = [(0, 1, 0.5, 0.5, 0.4, 0.3), (1, 0, 0.7, 0.6, 0.3, 0.5)]
    b = bundle.from_object(
        {"yolodbg": 1, "head": "yolox", "outputs": out, "input_size": [128, 128], "targets": batch(rows)}
    )
    specs = ["yolox", "yolox:box=giou", "yolox-main", "yolox:assigner.center_radius=1.5"]
    cmp = compare_recipes(b, [get_recipe(s) for s in specs])
    assert (cmp.assignment[0].same_params, cmp.assignment[0].unchanged) == (True, True)
    assert cmp.assignment[1].same_params is None and cmp.assignment[2].same_params is False
    [hint] = cmp.hints
    assert (hint.column, hint.term, hint.base_form, hint.form, hint.gain_key) == (
        1,
        "iou",
        "iou",
        "giou",
        "gain.iou",
    )
    assert dict(cmp.why)["batch multiply"] == ["none (objective = total)"] * 4
    with pytest.raises(RecipeError, match="unknown parameter 'cls'"):
        get_recipe("yolox:cls=focal")


def _render(cmp, top: int = 10) -> str:
    buf = io.StringIO()
    render_compare(
        Console(file=buf, width=160, color_system=None, legacy_windows=False, _environ={}), cmp, top
    )
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def runner():
    return CliRunner()


def test_cli_compare_recipes_console_and_json(runner, topk_bundle, tmp_path):
    src = topk_bundle.source
    res = runner.invoke(
        main, ["compare", src, "-r", "yolov8", "-r", "yolov8:box=giou"], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0, res.output
    for text in (
        "Loss terms (Δ against A)",
        "Assignment B vs A: unchanged\n  the difference is purely the loss",
        "giou",
    ):
        assert text in res.output
    res = runner.invoke(
        main, ["compare", src, "-r", "yolov8", "-r", "yolov8:assigner.topk=13", "--json", "-"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "yolodbg.compare/1" and doc["mode"] == "recipes"
    assert doc["assignment"][0]["added_positives"] == 3
    assert doc["assignment"][0]["pos_count_changed"] == [
        {"image": 1, "gt_index": 0, "before": 10, "after": 13}
    ]
    assert set(doc["deltas"][1]) >= {"column", "box", "cls", "dfl", "total", "objective"}
    f = tmp_path / "loss.toml"
    f.write_text('recipe = "yolov8"\n[params]\ncls = "qfl"\n')
    res = runner.invoke(
        main, ["compare", src, "-r", "yolov8", "-r", str(f), "--json", str(tmp_path / "c.json")]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["columns"][1]["label"] == "loss" and doc["magnitude_hints"][0]["to"] == "qfl"


def test_cli_compare_two_bundles(runner, tmp_path):
    a = _two_gt_bundle(tmp_path / "a.pt", shared_to=0)
    b = _two_gt_bundle(tmp_path / "b.pt", shared_to=1)
    res = runner.invoke(main, ["compare", str(a), str(b)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "4 switched GT" in res.output and "GTs by change in contribution" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "yolov8"], "compare needs two or more recipes for one bundle"),
        ([], "compare needs two or more recipes for one bundle"),
        (["-r", "yolov8", "-r", "yolov8:assigner.tpok=13"], "did you mean assigner.topk"),
        (
            ["-r", "yolov8", "-r", "yolov8:cls=vfl"],
            "cls='vfl'; expected one of bce, ce, focal, varifocal, qfl",
        ),
        (["SELF", "-r", "yolov8", "-r", "yolo11"], "two bundles are compared under one recipe"),
        (["SELF", "SELF"], "compare takes one bundle with several -r recipes, or two bundles; got 3"),
        (["-r", "yolov8", "-r", "nope.toml"], "nope.toml: no such recipe file"),
    ],
)
def test_cli_compare_bad_input_is_one_line_exit_2(runner, topk_bundle, args, message):
    src = topk_bundle.source
    argv = ["compare", src, *[src if x == "SELF" else x for x in args]]
    res = runner.invoke(main, argv)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yolodbg: error: ") and message in lines[0], res.stderr


def test_cli_compare_different_images_exit_2(runner, tmp_path, coco_file):
    pa, pb, gt = _coco_bundles(tmp_path, coco_file, ids_b=(7, 8))
    res = runner.invoke(main, ["compare", str(pa), str(pb), "--gt", str(gt)])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "cover different images" in res.stderr


def test_cli_recipes_lists_the_variant_keys(runner):
    res = runner.invoke(main, ["recipes", "yolov8"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for text in ("box.beta", "cls.gamma", "cls.alpha", "branch", "siou", "varifocal", "sqrt_wh_mse"):
        assert text in res.output
