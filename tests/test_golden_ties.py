"""The golden comparison's tolerances and near-tie detection, by mutation.

The golden harness forgives a discrete difference (foreground mask, GT of a positive) only where a near-tie
lets rounding pick the winner. These tests mutate the expected record of a real stored case and check that
a genuine near-tie is reported (not failed), while the same mutation away from a tie -- a wrong GT index, a
dropped positive, a term or soft target beyond its tolerance -- still fails.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import golden_module

from yolodbg.api import replay

C = golden_module("cases.py")
T = C.sibling("ties")
DATA = C.load_golden(Path(__file__).resolve().parent / "golden" / "yolov8_cases.pt")
CASES = {c["name"]: c for c in DATA["cases"]}
CASE = "v8n_fit_128_b2_edges"  # two images, several GTs each, fitted predictions


def _replayed(name: str = CASE):
    """(replay, captured TalAssignment, unpacked expected record, imgsz) of a stored case."""
    case = CASES[name]
    outputs, targets, imgsz = C.golden_inputs(DATA, case)
    from yolodbg.recipes import ultralytics_loss

    with T.capture(ultralytics_loss, "assign") as seen:
        res = replay(C.outputs_for_form(outputs, case["form"]), targets, recipe="yolov8")
    return res, seen[0], C.unpack_expected(case["expected"]), imgsz


def _consistent(res, exp: dict) -> dict:
    """The expected record with yolodbg's own discrete results and soft targets (so only a mutation differs)."""
    gi = torch.where(res.fg, res.gt_index, torch.full_like(res.gt_index, -1))
    return {
        **exp,
        "fg": res.fg.clone(),
        "gt_index": gi.clone(),
        "target_score": res.target_score.float().clone(),
    }


def _boundary_pair(a, res, k: int = 10):
    """(image, gt, p, q): p is GT gt's k-th best anchor by metric and its positive, q the (k+1)-th, a
    candidate that is background; their metrics far apart (no real tie)."""
    metric = a.align_metric
    for b in range(metric.shape[0]):
        for m in range(metric.shape[1]):
            idx = torch.topk(metric[b, m], k + 1).indices.tolist()
            p, q = idx[k - 1], idx[k]
            vp, vq = float(metric[b, m, p]), float(metric[b, m, q])
            if (
                int(res.gt_index[b, p]) == m
                and bool(res.fg[b, p])
                and not bool(res.fg[b, q])
                and vq > 0
                and not T.near(vp, vq, 1e-3)
            ):
                return b, m, p, q
    raise AssertionError("no GT with a clear top-k boundary in the case")


def test_the_stored_case_agrees_without_ties():
    res, a, exp, imgsz = _replayed()
    found = C.compare_detailed(res, exp, imgsz, T.tal_explains(a, 10))
    assert found.problems == [] and found.ties == []


def test_a_wrong_gt_index_at_a_non_tie_anchor_fails():
    res, a, exp, imgsz = _replayed()
    explain = T.tal_explains(a, 10)
    want = _consistent(res, exp)
    n_gt = a.align_metric.shape[1]
    for b, n in res.fg.nonzero().tolist():
        g = int(want["gt_index"][b, n])
        other = (g + 1) % n_gt
        if other != g and explain(b, n, g, other) is None:
            break
    else:
        raise AssertionError("no positive without a tie")
    want["gt_index"][b, n] = other
    found = C.compare_detailed(res, want, imgsz, explain)
    assert any("not explained by a near-tie" in p for p in found.problems), found.problems
    assert found.ties == []


def test_a_dropped_positive_at_a_non_tie_anchor_fails():
    res, a, exp, imgsz = _replayed()
    b, _, p, _ = _boundary_pair(a, res)
    want = _consistent(res, exp)
    # p is at the boundary by rank but its metric is far from the next one: not a tie
    want["fg"][b, p], want["gt_index"][b, p], want["target_score"][b, p] = False, -1, 0.0
    found = C.compare_detailed(res, want, imgsz, T.tal_explains(a, 10))
    assert found.problems and "not explained" in found.problems[0]


def test_a_genuine_top_k_near_tie_is_reported_not_failed():
    """The same swap of top-k membership fails on the real metrics and passes as a reported tie once the
    two anchors' metrics are within rounding of each other."""
    res, a, exp, imgsz = _replayed()
    b, m, p, q = _boundary_pair(a, res)
    want = _consistent(res, exp)
    want["fg"][b, p], want["gt_index"][b, p], want["target_score"][b, p] = False, -1, 0.0
    want["fg"][b, q], want["gt_index"][b, q] = True, m
    want["target_score"][b, q] = float(res.target_score[b, p])

    real = C.compare_detailed(res, want, imgsz, T.tal_explains(a, 10))
    assert real.problems and "2 anchors differ, not explained" in real.problems[0]

    metric = a.align_metric.clone()
    metric[b, m, q] = metric[b, m, p] * (1 - 2e-7)  # the (k+1)-th a couple of ulps below the k-th
    tied = dataclasses.replace(a, align_metric=metric)
    found = C.compare_detailed(res, want, imgsz, T.tal_explains(tied, 10))
    assert found.problems == [], found.problems
    assert len(found.ties) == 2 and all(f"GT {m} at its top-10 boundary" in t for t in found.ties)
    with pytest.warns(T.NearTieWarning, match="near-tie"):
        assert C.compare(res, want, imgsz, T.tal_explains(tied, 10)) == []


def test_a_near_tie_does_not_excuse_an_unrelated_mismatch():
    res, a, exp, imgsz = _replayed()
    b, m, p, q = _boundary_pair(a, res)
    metric = a.align_metric.clone()
    metric[b, m, q] = metric[b, m, p]
    explain = T.tal_explains(dataclasses.replace(a, align_metric=metric), 10)
    want = _consistent(res, exp)
    want["fg"][b, p], want["gt_index"][b, p], want["target_score"][b, p] = False, -1, 0.0  # explained
    # and a wrong GT on a positive of another image or GT, away from any tie
    for bb, n in res.fg.nonzero().tolist():
        g = int(want["gt_index"][bb, n])
        if (bb, g) != (b, m) and explain(bb, n, g, (g + 1) % metric.shape[1]) is None:
            want["gt_index"][bb, n] = (g + 1) % metric.shape[1]
            break
    found = C.compare_detailed(res, want, imgsz, explain)
    assert len(found.ties) == 1
    assert any("1 anchors differ, not explained" in p for p in found.problems), found.problems


def test_continuous_tolerances():
    res, a, exp, imgsz = _replayed()
    explain = T.tal_explains(a, 10)
    want = _consistent(res, exp)
    b, n = divmod(int(want["target_score"].argmax()), want["target_score"].shape[1])
    t = float(want["target_score"][b, n])
    want["target_score"][b, n] = t * (1 + 3e-6)  # kernel-sized drift: accepted
    assert C.compare_detailed(res, want, imgsz, explain).problems == []
    want["target_score"][b, n] = t * (1 + 1e-4)  # beyond rel 1e-5: fails
    assert "target_score: 1 anchors beyond" in C.compare_detailed(res, want, imgsz, explain).problems[0]
    want["target_score"][b, n] = t
    want["items"] = {**want["items"], "cls": want["items"]["cls"] * (1 + 1e-4)}
    found = C.compare_detailed(res, want, imgsz, explain)
    assert found.ties == [] and found.problems[0].startswith("term cls")


def test_tie_primitives():
    v = torch.tensor([5.0, 4.0, 3.0, 3.0 * (1 + 1e-7), 1.0])
    assert T.topk_boundary_tie(v, 3, 2) and T.topk_boundary_tie(v, 3, 3)  # 3rd and 4th nearly equal
    assert not T.topk_boundary_tie(v, 3, 0) and not T.topk_boundary_tie(v, 3, 4)
    assert not T.topk_boundary_tie(v, 2, 1)  # 4.0 vs 3.0: a clear boundary
    assert not T.topk_boundary_tie(v, 5, 4)  # everything selected
    z = torch.tensor([0.7, 0.0, 0.0, 0.0])
    assert T.topk_boundary_tie(z, 2, 3)  # equal zeros: topk's order decides
    u = torch.tensor([0.5, 0.8, 0.8 * (1 - 3e-7), 0.2])
    assert T.argmax_tie(u, 1, 2) and not T.argmax_tie(u, 1, 0)


def test_failure_messages_name_both_machines():
    """Every golden failure message carries the fixture's and this run's torch version and CPU capability."""
    line = C.provenance(DATA)
    fx = DATA["versions"]
    me = torch.backends.cpu.get_cpu_capability()
    assert f"fixture made with torch {fx['torch']}, CPU capability {fx['cpu_capability']}" in line
    assert f"this run: torch {torch.__version__}, CPU capability {me}" in line
    P = C.sibling("provenance")
    assert "unknown (made before this field existed)" in P.describe({"torch": "2.0"})  # no invented metadata
