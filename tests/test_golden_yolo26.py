"""Golden parity of the ``yolo26`` recipe with Ultralytics 8.4.190 ``E2ELoss`` (no ultralytics needed).

Fixtures: ``tests/golden/yolo26_cases.pt``, written by ``tests/golden/make_golden_yolo26.py`` from the real
criterion (YOLO26 with the L1 branch, YOLOv10 with DFL; random and fitted predictions; several epochs of the
one-to-many → one-to-one weight schedule). Terms and objective to relative 1e-5; both branches'
assignments exactly, except near-ties of yolodbg's own assignment that let the CPU's rounding choose
(reported as ``NearTieWarning``, see ``tests/golden/ties.py``). What is compared is in
``tests/golden/yolo26_cases.py``; the skeleton shared with the other harnesses in ``tests/golden/harness.py``.
"""

from __future__ import annotations

import pytest
import torch
from helpers import GOLDEN_DIR, golden_module

from yolodbg.api import replay

H = golden_module("harness.py")
Y = golden_module("yolo26_cases.py")
GOLDEN = GOLDEN_DIR / "yolo26_cases.pt"
DATA = Y.load_golden(GOLDEN)
CASES = H.cases_by_name(DATA)


def check_case(case: dict) -> None:
    """Replay ``case`` and fail on any difference that no near-tie explains; near-ties are warned."""
    r, calls = Y.replay_case(case)
    found = Y.compare_detailed(r, calls, case["expected"])
    found.warn(case["name"])
    H.assert_no_problems(case["name"], f"epoch {case['epoch']}", found.problems, DATA)


@pytest.mark.parametrize("name", sorted(CASES))
def test_yolo26_matches_ultralytics(name):
    check_case(CASES[name])


def test_one_to_one_keeps_at_most_one_positive_per_gt():
    positives = 0
    for case in CASES.values():
        r = replay(case["outputs"], case["targets"], recipe="yolo26")
        rows = r.result.extra_assignments["one2one"]["gt_of_anchor"]
        counts = torch.bincount(rows[rows >= 0], minlength=len(r.targets))
        assert not len(counts) or int(counts.max()) <= 1
        positives += int((rows >= 0).sum())
    assert positives > 0, "no one-to-one positive in any case: the check above saw nothing"


def test_the_fixtures_come_from_the_framework():
    H.check_fixture_file(GOLDEN, DATA, 1_500_000, ultralytics=Y.ULTRALYTICS_VERSION)
    assert len(CASES) >= 8
