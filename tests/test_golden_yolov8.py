"""Golden parity of the ``yolov8`` recipe with Ultralytics 8.4.190 ``v8DetectionLoss``.

The expected numbers were produced by the real criterion (``tests/golden/make_golden.py``) and are stored in
``tests/golden/yolov8_cases.pt``; this module needs neither ultralytics nor a network. Each case replays the stored
raw head output and batch targets with :func:`yolodbg.api.replay` and checks

* the loss items box / cls / dfl and the objective (returned loss tensor summed) to relative 1e-5,
* the foreground mask and the assigned gt index on every anchor (-1 on background) exactly, except where a
  near-tie in yolodbg's own assignment (two alignment metrics at a GT's top-k boundary, or two CIoUs for a
  contested anchor, within relative 1e-5) lets the CPU's rounding choose: that is reported as a
  ``NearTieWarning``, not a failure (see ``tests/golden/ties.py``),
* the soft target score t̂ of every anchor to relative 5e-5 plus 1e-8 absolute (``cases.py`` says why).

Fixtures made on one CPU hold on another: the tolerances absorb the last-bit differences of its kernels, and
every failure message names the torch version and CPU capability of the fixture and of the running machine.

Regenerate the fixtures with ``python tests/golden/make_golden.py`` from the repository root, in a separate
environment with the reference framework (``python -m venv``, then ``pip install torch torchvision
ultralytics==8.4.190``); the generator refuses another ultralytics version.
"""

from __future__ import annotations

import pytest
import torch
from helpers import GOLDEN_DIR, golden_module

from yolodbg.api import replay

H = golden_module("harness.py")
C = golden_module("cases.py")
GOLDEN_FILE = GOLDEN_DIR / "yolov8_cases.pt"
DATA = C.load_golden(GOLDEN_FILE)
CASES = H.cases_by_name(DATA)


def _replay(case: dict, recipe: str = "yolov8"):
    """(yolodbg's replay, tie explainer from its assignment, imgsz) of a stored case."""
    outputs, targets, imgsz = C.golden_inputs(DATA, case)
    res, explain = C.replay_explained(
        lambda: replay(
            C.outputs_for_form(outputs, case["form"]),
            targets,
            recipe=recipe,
            params=dict(case["params"]) or None,
            input_size=tuple(case["input_size"]) if case["input_size"] else None,
        ),
        topk=case["params"].get("assigner.topk", 10),
    )
    return res, explain, imgsz


def _check(name: str, recipe: str) -> None:
    case = CASES[name]
    exp = C.unpack_expected(case["expected"])
    res, explain, imgsz = _replay(case, recipe)
    H.assert_no_problems(name, C.case_context(case, exp), C.compare(res, exp, imgsz, explain), DATA)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_yolov8(name: str) -> None:
    _check(name, "yolov8")


@pytest.mark.parametrize("name", ["v11n_fit_96x160_b3_crowd", "v11n_rand_256_edges"])
def test_golden_yolo11_alias(name: str) -> None:
    _check(name, "yolo11")


def test_replay_leaves_inputs_untouched() -> None:
    case = CASES["v8n_fit_96x128_b4_empty"]
    outputs, targets, _ = C.golden_inputs(DATA, case)
    before = (outputs["boxes"].clone(), outputs["scores"].clone(), {k: v.clone() for k, v in targets.items()})
    replay(outputs, targets, recipe="yolov8")
    assert torch.equal(outputs["boxes"], before[0]) and torch.equal(outputs["scores"], before[1])
    assert before[2], "no target tensors to check"
    for k, v in before[2].items():
        assert torch.equal(targets[k], v), f"targets[{k!r}] modified in place"


def test_golden_file_is_consistent() -> None:
    """The fixture file itself: plain weights_only data, versions recorded, small, internally consistent."""
    # tests/golden/ as a whole (all frameworks' fixtures) must stay small; this harness's share:
    H.check_fixture_file(GOLDEN_FILE, DATA, 1_400_000, ultralytics=C.ULTRALYTICS_VERSION)
    for case in DATA["cases"]:
        exp = case["expected"]
        rec = DATA["inputs"][case["inputs"]]
        B, N = exp["fg"].shape
        assert rec["boxes"].shape == (B, 4 * C.REG_MAX, N)
        assert sum(f.shape[2] * f.shape[3] for f in rec["feats"]) == N
        assert exp["gt_index_fg"].numel() == exp["target_score_fg"].numel() == int(exp["fg"].sum())
        loss = exp["loss"]
        items = [exp["items"][k] for k in C.TERMS]
        for item, total in zip(items, loss, strict=True):
            assert C.rel_close(total, item * B, 1e-6)
        assert C.rel_close(exp["objective"], sum(loss), 1e-6)
