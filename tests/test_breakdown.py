"""Breakdown: conservation on random scenes, the JSON contract, hints and the NaN locator."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import assert_valid, batch, ultra_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import breakdown, bundle
from yolodbg.api import replay
from yolodbg.documents.explain import explain_doc
from yolodbg.explain import explain
from yolodbg.render import jsonout

scene = st.fixed_dictionaries(
    {
        "bs": st.integers(1, 3),
        "size": st.sampled_from([(64, 64), (96, 128), (128, 64)]),
        "nc": st.integers(1, 4),
        "seed": st.integers(0, 10_000),
        "scale": st.sampled_from([0.5, 1.0, 4.0]),
        "boxes": st.lists(
            st.tuples(
                st.integers(0, 2),
                st.integers(0, 3),
                st.floats(0.02, 0.98),
                st.floats(0.02, 0.98),
                st.floats(0.005, 1.0),
                st.floats(0.005, 1.0),
            ),
            max_size=12,
        ),
    }
)


def _scene(s):
    rows = [(b % s["bs"], c % s["nc"], x, y, w, h) for b, c, x, y, w, h in s["boxes"]]
    rows.sort(key=lambda r: r[0])
    out = ultra_output(bs=s["bs"], size=s["size"], nc=s["nc"], seed=s["seed"], scale=s["scale"])
    return out, batch(rows) if rows else {
        "batch_idx": torch.zeros(0),
        "cls": torch.zeros(0, 1),
        "bboxes": torch.zeros(0, 4),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene)
def test_conservation_on_random_scenes(s):
    out, b = _scene(s)
    r = replay(out, b)
    bd = breakdown.build(r.result, r.targets, top=5)
    assert bd.violations == []
    assert r.terms, "no terms to check"
    for t, value in r.terms.items():
        parts = sum(g.terms[t] for g in bd.gts) + bd.background[t]
        assert parts == pytest.approx(value, rel=1e-5, abs=1e-6)
        assert sum(im.terms[t] for im in bd.images) == pytest.approx(value, rel=1e-5, abs=1e-6)
    assert sum(g.share for g in bd.gts) <= 1 + 1e-9
    # every anchor is either background or assigned to exactly one GT
    assert int(r.fg.sum()) == sum(g.num_pos for g in bd.gts)
    assert r.objective == pytest.approx(sum(r.terms.values()) * s["bs"], rel=1e-6)


def _explain_doc(tmp_path, out, b, name="b.pt", images=None):
    path = bundle.save(tmp_path / name, out, targets=b, images=images)
    ex = explain(bundle.load(path), top=5)
    return ex, explain_doc(ex)


def test_explain_json_passes_the_contract_checker(tmp_path):
    out, b = _scene(
        {
            "bs": 2,
            "size": (96, 128),
            "nc": 3,
            "seed": 1,
            "scale": 1.0,
            "boxes": [(0, 1, 0.5, 0.5, 0.4, 0.3), (1, 2, 0.2, 0.3, 0.05, 0.08)],
        }
    )
    _, doc = _explain_doc(tmp_path, out, b)
    assert_valid(json.loads(jsonout.dumps(doc)), "yolodbg.explain/1")
    assert doc["schema"] == "yolodbg.explain/1"
    assert set(doc["terms"]) == {"box", "cls", "dfl"}
    assert doc["objective"] == pytest.approx(doc["total"] * 2, rel=1e-6)


def test_confident_anchor_on_empty_area_is_a_missing_label(tmp_path):
    out = ultra_output(bs=1, size=(64, 64), nc=2, seed=3)
    out["scores"][0, 1, 5] = 6.0  # anchor 5 of level P3 (cell 5, 0) is sure of class 1; no GT near it
    b = batch([(0, 0, 0.75, 0.75, 0.3, 0.3)])
    _, doc = _explain_doc(tmp_path, out, b)
    top = doc["negatives"][0]
    assert (top["anchor"], top["cell"], top["pred_class"], top["hint"]) == (5, [5, 0], 1, "missing_label?")
    assert top["contribution"] == pytest.approx(max(n["contribution"] for n in doc["negatives"]))


def _set_box(out, anchor, ltrb):
    """Make ``anchor`` predict ltrb distances (in cells, multiples of 0.5) with near one-hot bin logits."""
    logits = torch.full((4, 16), -30.0)
    for side, d in enumerate(ltrb):
        logits[side, int(d)] = 0.0
        if d != int(d):
            logits[side, int(d) + 1] = 0.0
    out["boxes"][0, :, anchor] = logits.reshape(-1)


def test_confident_other_class_on_a_gt_is_a_class_swap(tmp_path):
    out = ultra_output(bs=1, size=(64, 64), nc=2, seed=4)
    # GT class 0 covers the whole 64×64 input; ten P3 anchors (cells (2..6, 3..4)) predict it exactly and are
    # sure of class 0, so they win the top-10
    winners = [y * 8 + x for y in (3, 4) for x in range(2, 7)]
    for a in winners:
        x, y = a % 8, a // 8
        _set_box(out, a, (x + 0.5, y + 0.5, 8 - x - 0.5, 8 - y - 0.5))
        out["scores"][0, 0, a] = 6.0
    # the first P5 anchor, centre (16, 16), predicts [0, 0, 48, 48] (IoU 0.5625 with the GT) and class 1
    p5 = 64 + 16
    _set_box(out, p5, (0.5, 0.5, 1.0, 1.0))
    out["scores"][0, 1, p5] = 8.0
    ex, doc = _explain_doc(tmp_path, out, batch([(0, 0, 0.5, 0.5, 1.0, 1.0)]))
    assert ex.result.fg[0].nonzero().flatten().tolist() == winners
    swap = next(n for n in doc["negatives"] if n["anchor"] == p5)
    assert swap["hint"] == "class_swap?" and swap["best_iou"] == pytest.approx(0.5625, abs=1e-3)


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_nonfinite_logit_is_located(tmp_path, bad):
    # the locator skips the class logits when the logged BCE is finite: any non-finite logit must spoil it
    out = ultra_output(bs=2, size=(64, 64), nc=2, seed=5)
    out["scores"][1, 1, 70] = bad
    ex, doc = _explain_doc(tmp_path, out, batch([(0, 0, 0.5, 0.5, 0.3, 0.3)]))
    nf = ex.nonfinite
    assert nf is not None and nf.image_index == 1 and nf.anchor["anchor"] == 70
    assert "class logit channel 1" in nf.message
    json.loads(jsonout.dumps(doc))  # still valid JSON (non-finite numbers become null)


def test_gt_without_positive_gets_a_reason(tmp_path):
    out = ultra_output(bs=1, size=(64, 64), nc=2, seed=6)
    b = batch([(0, 0, 0.5, 0.5, 0.9, 0.9), (0, 1, 0.5, 0.5, 0.89, 0.89)])
    r = replay(out, b, params={"assigner.min_side": 0.0})
    bd = breakdown.build(r.result, r.targets)
    short = [g for g in bd.gts if g.num_pos < 10]
    assert short, "no GT with fewer than 10 positives: the scene no longer tests the reason"
    for g in short:
        assert g.reason is not None


def test_ledger_on_grid_sums_sparse_and_dense_ledgers_alike():
    from yolodbg.result import TermLedger

    g = torch.Generator().manual_seed(0)
    values = torch.rand(3, 7, generator=g, dtype=torch.float64)
    gt = torch.randint(-1, 2, (3, 7), generator=g)
    dense = TermLedger.dense(values, gt)
    plain = TermLedger(dense.values, dense.image, dense.anchor, dense.gt)  # same elements, no grid promise
    assert dense.grid == (3, 7) and plain.grid is None
    assert torch.equal(dense.on_grid(dense.values, 3, 7), values)
    assert torch.equal(plain.on_grid(plain.values, 3, 7), values)
    # a sparse ledger: repeated (image, anchor) pairs add up, absent ones are 0
    sparse = TermLedger.sparse(
        torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 2, 0]), torch.tensor([5, 1, 5]), gt[0, :3]
    )
    grid = sparse.on_grid(sparse.values, 3, 7)
    assert grid[0, 5] == 5.0 and grid[2, 1] == 2.0 and float(grid.sum()) == 7.0
