"""Golden parity of the ``yolo26`` recipe with Ultralytics 8.4.190 ``E2ELoss`` (no ultralytics needed).

Fixtures: ``tests/golden/yolo26_cases.pt``, written by ``tests/golden/make_golden_yolo26.py`` from the real
criterion (YOLO26 with the L1 branch, YOLOv10 with DFL; random and fitted predictions; several epochs of the
one-to-many → one-to-one weight schedule).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolodbg import breakdown
from yolodbg.api import replay

GOLDEN = Path(__file__).resolve().parent / "golden" / "yolo26_cases.pt"
DATA = torch.load(GOLDEN, weights_only=True)
CASES = {c["name"]: c for c in DATA["cases"]}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-6)


def check_case(case: dict) -> None:
    exp = case["expected"]
    r = replay(case["outputs"], case["targets"], recipe="yolo26", params={"epoch": case["epoch"]})
    res = r.result
    names = list(res.terms)
    assert names[:2] == ["box", "cls"] and names[2] in ("l1", "dfl")
    for got, want in zip(res.terms.values(), exp["items"], strict=True):
        assert _rel(got, want) <= 1e-5, (case["name"], res.terms, exp["items"])
    o2m = [res.extra_terms[f"o2m.{k}"] for k in names]
    for got, want in zip(o2m, exp["branches"]["one2many"]["items"], strict=True):
        assert _rel(got, want) <= 1e-5, (case["name"], o2m, exp["branches"]["one2many"]["items"])
    assert _rel(r.objective, exp["objective"]) <= 1e-5
    assert [res.normalizers["o2m_weight"], res.normalizers["o2o_weight"]] == pytest.approx(
        exp["weights"], abs=1e-12
    )
    local = r.targets.local_index()
    for key, fg, gt_rows in (
        ("one2many", res.fg, res.gt_of_anchor),
        ("one2one", res.extra_assignments["one2one"]["fg"], res.extra_assignments["one2one"]["gt_of_anchor"]),
    ):
        want = exp["branches"][key]
        assert torch.equal(fg, want["fg"]), f"{case['name']} {key}: fg differs"
        got_idx = torch.full_like(gt_rows, -1)
        got_idx[gt_rows >= 0] = local[gt_rows[gt_rows >= 0]]
        assert torch.equal(got_idx, want["gt_idx"]), f"{case['name']} {key}: assigned GT differs"
    bd = breakdown.build(res, r.targets)
    assert bd.violations == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_yolo26_matches_ultralytics(name):
    check_case(CASES[name])


def test_one_to_one_keeps_at_most_one_positive_per_gt():
    for case in CASES.values():
        r = replay(case["outputs"], case["targets"], recipe="yolo26")
        rows = r.result.extra_assignments["one2one"]["gt_of_anchor"]
        counts = torch.bincount(rows[rows >= 0], minlength=len(r.targets))
        assert not len(counts) or int(counts.max()) <= 1


def test_the_fixtures_come_from_the_framework():
    assert DATA["ultralytics"] == "8.4.190" and len(CASES) >= 8
