"""Golden parity of the ``yolo26`` recipe with Ultralytics 8.4.190 ``E2ELoss`` (no ultralytics needed).

Fixtures: ``tests/golden/yolo26_cases.pt``, written by ``tests/golden/make_golden_yolo26.py`` from the real
criterion (YOLO26 with the L1 branch, YOLOv10 with DFL; random and fitted predictions; several epochs of the
one-to-many → one-to-one weight schedule). Terms and objective to relative 1e-5; both branches'
assignments exactly, except near-ties of yolodbg's own assignment that let the CPU's rounding choose
(reported as ``NearTieWarning``, see ``tests/golden/ties.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from synth import golden_module

from yolodbg import breakdown
from yolodbg.api import replay
from yolodbg.recipes import ultralytics_loss

T = golden_module("ties.py")
P = golden_module("provenance.py")
GOLDEN = Path(__file__).resolve().parent / "golden" / "yolo26_cases.pt"
DATA = torch.load(GOLDEN, weights_only=True)
CASES = {c["name"]: c for c in DATA["cases"]}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-6)


def _where(name: str) -> str:
    return f"{name} ({P.describe(DATA)})"


def _discrete(name: str, key: str, fg, got_idx, want: dict, explain) -> tuple[list[str], list[str]]:
    """(failures, near-ties) between one branch's assignment and the expected one: every anchor whose
    GT (or background) differs must be explained by a near-tie of yolodbg's own assignment."""
    problems, ties = [], []
    if not torch.equal(fg, got_idx >= 0):
        problems.append(f"{key}: fg and assigned GT disagree")
    want_idx = torch.where(want["fg"], want["gt_idx"], torch.full_like(want["gt_idx"], -1))
    for b, n in (got_idx != want_idx).nonzero().tolist():
        g, w = int(got_idx[b, n]), int(want_idx[b, n])
        reason = explain(b, n, g, w)
        line = f"{key}: img{b} anchor {n} got GT {g} want GT {w} (-1: background)"
        (ties if reason else problems).append(f"{line}: near-tie, {reason}" if reason else line)
    return problems, ties


def check_case(case: dict) -> None:
    exp = case["expected"]
    with T.capture(ultralytics_loss, "assign", with_args=True) as calls:
        r = replay(case["outputs"], case["targets"], recipe="yolo26", params={"epoch": case["epoch"]})
    res = r.result
    names = list(res.terms)
    assert names[:2] == ["box", "cls"] and names[2] in ("l1", "dfl")
    local = r.targets.local_index()
    problems, ties = [], []
    for (assignment, args, _), (key, fg, gt_rows) in zip(
        calls,
        (
            ("one2many", res.fg, res.gt_of_anchor),
            (
                "one2one",
                res.extra_assignments["one2one"]["fg"],
                res.extra_assignments["one2one"]["gt_of_anchor"],
            ),
        ),
        strict=True,
    ):
        tal = args[7]  # the TalParams of this branch
        got_idx = torch.full_like(gt_rows, -1)
        got_idx[gt_rows >= 0] = local[gt_rows[gt_rows >= 0]]
        found = _discrete(
            case["name"],
            key,
            fg,
            got_idx,
            exp["branches"][key],
            T.tal_explains(assignment, tal.topk, tal.topk2),
        )
        problems += found[0]
        ties += found[1]
    assert not problems, (_where(case["name"]), problems)
    for t in ties:
        warnings.warn(T.NearTieWarning(f"{case['name']}: {t}"), stacklevel=2)
    assert [res.normalizers["o2m_weight"], res.normalizers["o2o_weight"]] == pytest.approx(
        exp["weights"], abs=1e-12
    ), _where(case["name"])
    if ties:  # the terms follow the tie-broken assignment; nothing more to compare to the fixture
        return
    for got, want in zip(res.terms.values(), exp["items"], strict=True):
        assert _rel(got, want) <= 1e-5, (_where(case["name"]), res.terms, exp["items"])
    o2m = [res.extra_terms[f"o2m.{k}"] for k in names]
    for got, want in zip(o2m, exp["branches"]["one2many"]["items"], strict=True):
        assert _rel(got, want) <= 1e-5, (_where(case["name"]), o2m, exp["branches"]["one2many"]["items"])
    assert _rel(r.objective, exp["objective"]) <= 1e-5, _where(case["name"])
    bd = breakdown.build(res, r.targets)
    assert bd.violations == [], _where(case["name"])


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
    assert DATA["cpu_capability"] and DATA["torch"]  # where the numbers were made
