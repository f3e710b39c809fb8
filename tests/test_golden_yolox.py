"""Golden parity of the ``yolox`` / ``yolox-main`` recipes with YOLOX's ``YOLOXHead.get_losses``.

The expected numbers come from the real YOLOX 0.3.0 head (and the same head with the main-branch
``get_assignments``), produced by ``tests/golden/make_golden_yolox.py`` and stored in
``tests/golden/yolox_cases.pt``; this module needs neither YOLOX nor a network. Each case replays the stored
per-level head maps and batch targets with :func:`yolodbg.api.replay` and checks

* the logged items iou (× 5), obj, cls, l1 and the total loss to relative 1e-5,
* the num_fg normaliser, the positives exactly, the matched GT of every positive,
* the IoU class target of every anchor to relative 1e-5 plus 1e-8 absolute, the dynamic k of every GT.

Positives, matched GTs and dynamic k stay exact: no near-tie detection for SimOTA yet (none has shown
up between the kernels tried: the original fixtures' machine, AVX2, the scalar fallback); a failure
message names the torch version and CPU capability of the fixture and of this machine, to tell a
kernel's rounding from a bug.

Regenerate the fixtures with ``tests/golden/make_golden_yolox.py`` (see its docstring for the environment).
"""

from __future__ import annotations

import pytest
import torch
from helpers import GOLDEN_DIR, golden_module

from yolodbg.api import replay
from yolodbg.recipes.yolox_replay import yolox_labels

H = golden_module("harness.py")
C = golden_module("yolox_cases.py")
GOLDEN_FILE = GOLDEN_DIR / "yolox_cases.pt"
DATA = C.load_golden(GOLDEN_FILE)
CASES = H.cases_by_name(DATA)


def _replay(case: dict):
    levels, targets, imgsz = C.golden_inputs(DATA, case)
    res = replay(
        levels, targets, recipe=case["recipe"], params=case["params"] or None, input_size=imgsz, head="yolox"
    )
    return res, imgsz


@pytest.mark.parametrize("name", list(CASES))
def test_golden_yolox(name: str) -> None:
    case = CASES[name]
    exp = C.unpack_expected(case["expected"])
    res, imgsz = _replay(case)
    problems, _ = C.compare(res, exp, imgsz)
    H.assert_no_problems(name, f"expected {C.case_summary(exp)}", problems, DATA)


@pytest.mark.parametrize("name", ["nano_fit_160_b4_empty_release", "synth_204x332_odd_many_main"])
def test_golden_ledger_conserves(name: str) -> None:
    """Σ ledger elements == each logged term; obj has one element per anchor, the others one per positive."""
    res, _ = _replay(CASES[name])
    result = res.result
    bs, n = result.fg.shape
    assert result.terms, "no terms to check"
    for term, value in result.terms.items():
        assert float(result.ledger[term].values.sum()) == pytest.approx(value, rel=1e-6, abs=1e-9), term
    assert result.ledger["obj"].values.numel() == bs * n
    for term in ("iou", "cls", "l1"):
        assert torch.equal(result.ledger[term].gt, result.positives.gt)
    assert bool((result.positives.gt >= 0).all())


def test_labels_match_the_generator() -> None:
    """yolodbg's pixel labels are exactly the ones the reference was fed (float32 bboxes × float32 W, H)."""
    from yolodbg import groundtruth

    assert DATA["inputs"], "no input sets in the fixture"
    for key, rec in DATA["inputs"].items():
        levels, targets, imgsz = C.golden_inputs(DATA, {"inputs": key})
        nc = levels[0].shape[1] - 5
        t = groundtruth.from_batch(targets, rec["batch_size"], imgsz, nc)
        mine, _ = yolox_labels(t)
        want = C.yolox_labels(targets, rec["batch_size"], imgsz)
        assert torch.equal(mine, want), key


def test_golden_inputs_untouched() -> None:
    case = CASES["nano_fit_96x160_crowd_main_l1"]
    levels, targets, imgsz = C.golden_inputs(DATA, case)
    before = [t.clone() for t in levels], {k: v.clone() for k, v in targets.items()}
    replay(levels, targets, recipe="yolox-main", params={"use_l1": True}, input_size=imgsz, head="yolox")
    assert before[0] and before[1], "nothing to compare"
    assert all(torch.equal(a, b) for a, b in zip(levels, before[0], strict=True))
    assert all(torch.equal(targets[k], v) for k, v in before[1].items())


def test_golden_file_is_consistent() -> None:
    H.check_fixture_file(GOLDEN_FILE, DATA, 1_500_000, yolox=C.YOLOX_VERSION, main_commit=C.MAIN_COMMIT)
    variants = {c["variant"] for c in DATA["cases"]}
    assert variants == {"release", "main"}
    for case in DATA["cases"]:
        exp = case["expected"]
        rec = DATA["inputs"][case["inputs"]]
        B, N = exp["shape"]
        assert rec["batch_size"] == B and sum(t.shape[2] * t.shape[3] for t in rec["levels"]) == N
        assert exp["fg_index"].numel() == exp["gt_index_fg"].numel() == exp["num_fg"]
        it = exp["items"]
        assert C.rel_close(exp["total"], it["iou"] + it["obj"] + it["cls"] + it["l1"], 1e-6)
        assert sum(len(k) for k in exp["dynamic_k"]) == exp["num_gts"]
