"""Ultralytics' class weights (cls_pw) in the yolov8/yolo26 recipes: hand-computed weighted BCE, the bundle's
meta, refusals, conservation, and (when ultralytics is installed) the live criterion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from helpers import batch, ultra_output

from yolodbg import bundle
from yolodbg.api import replay
from yolodbg.capture import class_weight_meta
from yolodbg.cli import main
from yolodbg.explain import explain
from yolodbg.recipes import get_recipe
from yolodbg.recipes.class_weights import from_counts

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]
WEIGHTS = [0.5, 2.0, 0.5]


def test_weights_from_counts_as_the_trainer_derives_them():
    # cls_pw 0.5, counts 4, 1, 0: (1/4)^.5 = 0.5, 1, absent -> mean 0.75; divided by mean(0.5, 1, 0.75) = 0.75
    assert from_counts([4, 1, 0], 0.5).tolist() == pytest.approx([2 / 3, 4 / 3, 1.0])
    # cls_pw 1: 1/3, 1, absent 2/3 -> / (2/3)
    assert from_counts([3, 1, 0], 1.0).tolist() == pytest.approx([0.5, 1.5, 1.0])
    assert from_counts([5, 5, 5], 0.7).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_weighted_bce_without_gts_is_the_hand_computed_sum():
    # no GT: every target is 0, S = clamp(0, 1) = 1, so cls = gain · Σ_b,a,c w_c · softplus(x)
    out = ultra_output(bs=1, size=(64, 64), nc=3, seed=4)
    empty = {"batch_idx": torch.zeros(0), "cls": torch.zeros(0, 1), "bboxes": torch.zeros(0, 4)}
    res = replay(out, empty, params={"class_weights": "0.5/2/0.5"}).result
    x = out["scores"].double()  # (B, nc, N)
    want = 0.5 * float((F.softplus(x) * torch.tensor(WEIGHTS, dtype=torch.float64).view(1, 3, 1)).sum())
    assert res.terms["cls"] == pytest.approx(want, rel=1e-6)
    assert res.terms["box"] == 0 and res.terms["dfl"] == 0


def test_weighted_cls_is_the_weighted_sum_of_the_per_class_terms():
    out, targets = ultra_output(bs=2, size=(128, 96), nc=3, seed=2), batch(ROWS)
    plain = replay(out, targets).result
    per_class = [
        replay(
            out, targets, params={"class_weights": "/".join("1" if j == c else "0" for j in range(3))}
        ).result
        for c in range(3)
    ]
    weighted = replay(out, targets, params={"class_weights": "0.5/2/0.5"}).result
    assert weighted.terms["cls"] == pytest.approx(
        sum(w * r.terms["cls"] for w, r in zip(WEIGHTS, per_class, strict=True)), rel=1e-6
    )
    assert sum(r.terms["cls"] for r in per_class) == pytest.approx(plain.terms["cls"], rel=1e-6)
    # the weights touch the class term only: same positives, same box and DFL
    for term in ("box", "dfl"):
        assert weighted.terms[term] == plain.terms[term]
    assert torch.equal(weighted.fg, plain.fg)


def _bundle(tmp_path, meta, name="w.pt", **kw):
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2, **kw)
    return bundle.save(tmp_path / name, out, input_size=[128, 96], targets=batch(ROWS), meta=meta)


def test_the_bundles_weights_are_replayed_and_the_ledger_conserves(tmp_path):
    weighted = explain(bundle.load(_bundle(tmp_path, {"class_weights": WEIGHTS, "cls_pw": 0.5})))
    given = explain(
        bundle.load(_bundle(tmp_path, {}, "plain.pt")), recipe=get_recipe("yolov8:class_weights=0.5/2/0.5")
    )
    assert weighted.result.terms == given.result.terms
    assert any("meta.class_weights" in n for n in weighted.result.notes)
    bd = weighted.breakdown
    assert bd.violations == []
    gts = sum(g.terms["cls"] for g in bd.gts)
    assert gts + bd.background["cls"] == pytest.approx(weighted.result.terms["cls"], rel=1e-5)


def test_yolo26_weights_both_branches(tmp_path):
    one = ultra_output(bs=2, size=(128, 96), nc=3, seed=2, reg_max=1)
    many = ultra_output(bs=2, size=(128, 96), nc=3, seed=3, reg_max=1)
    out = {"one2many": many, "one2one": one}
    plain = replay(out, batch(ROWS), recipe="yolo26").result
    uniform = replay(out, batch(ROWS), recipe="yolo26", params={"class_weights": "2/2/2"}).result
    assert uniform.terms["cls"] == pytest.approx(2 * plain.terms["cls"], rel=1e-6)
    assert uniform.extra_terms["o2m.cls"] == pytest.approx(2 * plain.extra_terms["o2m.cls"], rel=1e-6)


def _explain(path, *extra):
    return CliRunner().invoke(main, ["explain", str(path), "--top", "0", *extra], env={"COLUMNS": "160"})


@pytest.mark.parametrize(
    ("meta", "recipe", "needle"),
    [
        ({"cls_pw": 0.5}, None, "meta.cls_pw is 0.5 (class weights on) but meta.class_weights is missing"),
        (
            {"class_weights": [1.0, 2.0]},
            None,
            "meta.class_weights has 2 weights but the outputs have 3 classes",
        ),
        ({"class_weights": "heavy"}, None, "meta.class_weights is str"),
        ({"class_weights": [1.0, float("nan"), 1.0]}, None, "weights must be finite"),
        ({"cls_pw": "lots"}, None, "meta.cls_pw is 'lots'"),
        ({}, "yolov8:class_weights=1/2", "class_weights has 2 weights but the outputs have 3 classes"),
        ({}, "yolov8:class_weights=a/b/c", "expected auto, off or numbers"),
    ],
)
def test_weights_that_cannot_be_replayed_are_refused(tmp_path, meta, recipe, needle):
    res = _explain(_bundle(tmp_path, meta), *(["-r", recipe] if recipe else []))
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_replaying_a_weighted_bundle_unweighted_says_so(tmp_path):
    path = _bundle(tmp_path, {"class_weights": WEIGHTS, "cls_pw": 0.5})
    ex = explain(bundle.load(path), recipe=get_recipe("yolov8:class_weights=off"))
    assert any("ignores them (class_weights=off)" in w for w in ex.result.warnings)
    plain = explain(bundle.load(_bundle(tmp_path, {}, "plain.pt")))
    assert ex.result.terms == plain.result.terms


def test_capture_records_the_models_class_weights():
    class Model(torch.nn.Module):
        pass

    m = Model()
    assert class_weight_meta(m) == {}
    m.class_weights, m.args = torch.tensor(WEIGHTS), {"cls_pw": 0.5}
    assert class_weight_meta(m) == {"class_weights": WEIGHTS, "cls_pw": 0.5}


def test_live_ultralytics_criterion_with_class_weights():
    pytest.importorskip("ultralytics")
    from helpers import golden_module
    from ultralytics.utils.loss import v8DetectionLoss

    cases = golden_module("cases.py")
    model = cases.build_model("yolov8n.yaml", 3, 0)
    model.class_weights = from_counts([7, 2, 0], 0.5)
    crit = v8DetectionLoss(model)
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2)
    targets = batch(ROWS)
    _, items = crit(
        {k: (v.clone() if torch.is_tensor(v) else list(v)) for k, v in out.items()}, dict(targets)
    )
    spec = "/".join(repr(v) for v in model.class_weights.tolist())
    res = replay(out, targets, params={"class_weights": spec}).result
    for term in ("box", "cls", "dfl"):
        assert res.terms[term] == pytest.approx(float(items[f"{term}_loss"]), rel=1e-5)
