"""Golden parity of the ``yolov5`` recipe with YOLOv5 7.0.14 ``ComputeLoss``.

The expected numbers were produced by the real loss (``tests/golden/make_golden_yolov5.py``) and are stored in
``tests/golden/yolov5_cases.pt``; this module needs neither the yolov5 package nor a network. Each case replays the
stored predictions, targets and anchors and checks

* the loss items box / obj / cls and the objective (returned loss × B) to relative 1e-5,
* the matches of every level — (image, anchor, gj, gi) in the framework's order, so the same count per level,
  exactly (they depend on labels and anchors only, so no kernel's rounding can change them),
* the objectness target of every anchor after the duplicate writes, to relative 1e-5 (plus 1e-8
  absolute): it is a CIoU of predicted boxes, whose last bits differ between CPU kernels,
* conservation of the breakdown.

Regenerate the fixtures with ``python tests/golden/make_golden_yolov5.py`` in an environment with yolov5 7.0.14.
"""

from __future__ import annotations

import pytest
import torch
from helpers import GOLDEN_DIR, golden_module

H = golden_module("harness.py")
C = golden_module("cases_yolov5.py")
GOLDEN_FILE = GOLDEN_DIR / "yolov5_cases.pt"
DATA = C.load_golden(GOLDEN_FILE)
CASES = H.cases_by_name(DATA)


def _replay(name: str):
    case = CASES[name]
    inputs = C.golden_inputs(DATA, case)
    res, targets = C.replay(inputs, case["params"])
    return case, res, targets


@pytest.mark.parametrize("name", list(CASES))
def test_golden_yolov5(name: str) -> None:
    case, res, targets = _replay(name)
    context = f"inputs {case['inputs']}, params {case['params']}; expected {C.case_summary(case['expected'])}"
    H.assert_no_problems(name, context, C.compare(res, targets, case["expected"]), DATA)


def test_golden_cases_exercise_the_quirks() -> None:
    """The fixtures hold what they claim: duplicate writes, duplicate cells, clamped cells, unmatched GTs."""
    seen: dict[str, int] = {}
    reasons: set[str] = set()
    for name in CASES:
        _, res, _ = _replay(name)
        for flag, mask in res.positives.flags.items():
            seen[flag] = seen.get(flag, 0) + int(mask.sum())
        reasons |= {r.code for r in res.gt_reasons.values()}
    for flag in ("obj_overwritten", "duplicate_cell", "cell_clamped", "offset_left", "offset_down"):
        assert seen.get(flag, 0) > 0, f"no positive with {flag} in the golden cases"
    assert {"anchor_ratio", "lost_conflict", "few_cells"} <= reasons, reasons


def test_golden_sorted_variant_changes_only_objectness() -> None:
    a, b = CASES["v5n_fit_256_nc3_crowd"]["expected"], CASES["v5n_fit_256_nc3_crowd_sorted"]["expected"]
    assert a["items"]["box"] == b["items"]["box"] and a["items"]["cls"] == b["items"]["cls"]
    assert a["items"]["obj"] != b["items"]["obj"]


def test_replay_leaves_inputs_untouched() -> None:
    case = CASES["v5n_fit_256_nc3_crowd"]
    inputs = C.golden_inputs(DATA, case)
    before = [t.clone() for t in inputs["levels"]], {k: v.clone() for k, v in inputs["targets"].items()}
    C.replay(inputs, case["params"])
    assert before[0] and before[1], "nothing to compare"
    assert all(torch.equal(a, b) for a, b in zip(inputs["levels"], before[0], strict=True))
    assert all(torch.equal(inputs["targets"][k], v) for k, v in before[1].items())


def test_golden_file_is_consistent() -> None:
    """The fixture file itself: plain weights_only data, versions recorded, small, internally consistent."""
    H.check_fixture_file(GOLDEN_FILE, DATA, 1_500_000, yolov5=C.YOLOV5_VERSION)
    assert len(CASES) == len(C.CASES), "cases_yolov5.py and the fixture disagree; regenerate"
    for case in DATA["cases"]:
        exp, rec = case["expected"], DATA["inputs"][case["inputs"]]
        assert [int(ix.shape[0]) for ix in exp["indices"]] == exp["n_per_level"]
        assert len(rec["levels"]) == len(exp["n_per_level"]) == rec["anchors_px"].shape[0]
        B = rec["levels"][0].shape[0]
        assert exp["num_anchors"] == sum(t[0, ..., 0].numel() for t in rec["levels"])
        assert C.rel_close(exp["loss"], sum(exp["items"].values()) * B, 1e-6)
