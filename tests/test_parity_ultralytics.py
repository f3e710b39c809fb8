"""Live parity of the ``yolov8`` recipe with the installed Ultralytics ``v8DetectionLoss`` (8.4.190).

Skipped as a whole when ultralytics is not importable (CI). Where it is, every case of
``tests/golden/cases.py`` is rebuilt live (model forward, overfitting with the real criterion, synthetic
predictions; full float32, no storage rounding) together with 30 random scenes (random batch size, input size,
nc, box counts and sizes down to sub-pixel, empty images and batches, edges on anchor centres and borders, TAL
variants, list-of-levels output form). The real criterion and :func:`yolodbg.api.replay` run on identical inputs
and must agree like in ``test_golden_yolov8.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import golden_module

pytest.importorskip("ultralytics")

from yolodbg.api import replay

pytestmark = pytest.mark.parity

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
N_RANDOM_SCENES = 30


C = golden_module("cases.py")
CASES = {c["name"]: c for c in C.CASES}
_BUILT: dict[str, tuple[dict, dict]] = {}


@pytest.fixture(scope="module", autouse=True)
def _quiet_single_threaded():
    """Quiet ultralytics logging; one torch thread (the overfitting steps are small convolutions, and two
    threads on a busy 2-core machine spin-wait many times slower)."""
    from ultralytics.utils import LOGGER

    level, threads = LOGGER.level, torch.get_num_threads()
    LOGGER.setLevel("WARNING")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    LOGGER.setLevel(level)


def _check(name: str, outputs: dict, targets: dict, params: dict, form: str, input_size) -> None:
    exp = C.ultralytics_expected(outputs, targets, params)
    res = replay(
        C.outputs_for_form(outputs, form),
        {k: v.clone() for k, v in targets.items()},
        recipe="yolov8",
        params=dict(params) or None,
        input_size=tuple(input_size) if input_size else None,
    )
    imgsz = tuple(f * 8 for f in outputs["feats"][0].shape[2:])
    problems = C.compare(res, exp, imgsz)
    assert not problems, (
        f"{name} (form {form}, params {params}; expected {C.case_summary(exp)}):\n  " + "\n  ".join(problems)
    )


@pytest.mark.parametrize("name", list(CASES))
def test_parity_golden_case_live(name: str) -> None:
    case = CASES[name]
    key = case["inputs"]
    if key not in _BUILT:
        _BUILT[key] = C.build_inputs(C.INPUT_SETS[key])
    outputs, targets = _BUILT[key]
    _check(name, outputs, targets, case["params"], case["form"], case["input_size"])


@pytest.mark.parametrize("seed", range(N_RANDOM_SCENES))
def test_parity_random_scene(seed: int) -> None:
    scene = C.random_scene(seed)
    outputs, targets = C.build_random_inputs(scene)
    _check(scene["name"], outputs, targets, scene["params"], scene["form"], None)
