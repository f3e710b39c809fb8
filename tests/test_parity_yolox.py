"""Live parity of the ``yolox`` / ``yolox-main`` recipes with the installed YOLOX 0.3.0 ``YOLOXHead``.

Skipped as a whole when ``yolox`` is not importable (CI). Where it is (its Python code, e.g. the unpacked PyPI
sdist on the path), every case of ``tests/golden/yolox_cases.py`` is rebuilt live (YOLOX-nano forward, a few
optimisation steps with the real loss, synthetic logits; full float32, no storage rounding), together with
24 random scenes (batch size, input size, nc up to 80, box counts and sizes down to sub-pixel, empty images and
batches, zero label rows, edges on anchor centres and borders, both variants, L1 and GIoU). The real head and
yolodbg run on identical inputs and must agree on every term and the total (relative 1e-5), the positives,
their matched GT and IoU target, the dynamic k -- and, bit for bit, on SimOTA's cost and IoU matrices.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from synth import golden_module

pytest.importorskip("yolox")

from yolodbg.api import replay
from yolodbg.errors import RecipeError
from yolodbg.heads import yolox as head
from yolodbg.recipes import get_recipe
from yolodbg.recipes import yolox as recipe_mod

pytestmark = pytest.mark.parity

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
N_RANDOM_SCENES = 24


C = golden_module("yolox_cases.py")
CASES = {c["name"]: c for c in C.CASES}
_BUILT: dict[str, tuple[list, dict]] = {}


def _check(name: str, levels, targets, imgsz, variant: str, use_l1: bool, box: str) -> None:
    labels = C.yolox_labels(targets, levels[0].shape[0], imgsz)
    exp = C.yolox_expected(levels, labels, variant, use_l1, box)
    case = {"use_l1": use_l1, "box": box}
    rec = get_recipe(C.RECIPES[variant])
    res = replay(
        levels, targets, recipe=rec.name, params=C.case_params(case) or None, input_size=imgsz, head="yolox"
    )
    problems, _ = C.compare(res, exp, imgsz)
    # the SimOTA intermediates, image by image: candidates, IoU and cost matrices bit for bit
    rec = type(rec)(C.case_params(case))
    rep = recipe_mod.replay(head.parse(levels, input_size=imgsz), labels, rec.params, rec.simota_params())
    for b, a in enumerate(rep.images):
        if a is None:
            if exp["cost"][b] is not None:
                problems.append(f"image {b}: yolodbg skipped it, YOLOX assigned it")
            continue
        if int(a.candidates.sum()) != exp["num_candidates"][b]:
            problems.append(
                f"image {b}: {int(a.candidates.sum())} candidates want {exp['num_candidates'][b]}"
            )
        elif not (torch.equal(a.ious, exp["ious"][b]) and torch.equal(a.cost, exp["cost"][b])):
            worst = float((a.cost - exp["cost"][b]).abs().max())
            problems.append(
                f"image {b}: IoU/cost matrices differ from YOLOX's (cost off by up to {worst:.3g})"
            )
    assert not problems, f"{name} ({variant}, l1={use_l1}, {box}; {C.case_summary(exp)}):\n  " + "\n  ".join(
        problems
    )


@pytest.mark.parametrize("name", list(CASES))
def test_parity_golden_case_live(name: str) -> None:
    case = CASES[name]
    key = case["inputs"]
    if key not in _BUILT:
        _BUILT[key] = C.build_inputs(C.INPUT_SETS[key])
    levels, targets = _BUILT[key]
    _check(name, levels, targets, C.INPUT_SETS[key]["imgsz"], case["variant"], case["use_l1"], case["box"])


@pytest.mark.parametrize("seed", range(N_RANDOM_SCENES))
def test_parity_random_scene(seed: int) -> None:
    scene = C.random_scene(seed)
    levels, targets = C.build_random_inputs(scene)
    _check(scene["name"], levels, targets, scene["imgsz"], scene["variant"], scene["use_l1"], scene["box"])


@pytest.mark.parametrize("variant", ["release", "main"])
def test_no_candidate_fails_like_yolox(variant: str) -> None:
    """A batch whose only GT lies far outside the input: YOLOX raises in topk, yolodbg says why."""
    levels = C.synthetic_outputs([[]], (64, 64), 2, 0)
    targets = {
        "batch_idx": torch.zeros(1),
        "cls": torch.zeros(1),
        "bboxes": torch.tensor([[5.0, 5.0, 0.1, 0.1]]),
    }
    labels = C.yolox_labels(targets, 1, (64, 64))
    with pytest.raises(RuntimeError, match="out of range"):
        C.yolox_expected(levels, labels, variant)
    with pytest.raises(RecipeError, match="none of its"):
        replay(levels, targets, recipe=C.RECIPES[variant], input_size=(64, 64), head="yolox")
