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
from helpers import golden_module

pytest.importorskip("yolox")

from yolodbg.api import replay
from yolodbg.errors import RecipeError
from yolodbg.heads import yolox as head
from yolodbg.recipes import get_recipe
from yolodbg.recipes import yolox_replay as recipe_mod

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


def _yolox_eval(levels, strides, nc, conf=0.01, nms=0.65):
    """YOLOX's own eval path on the raw level maps: the head's eval outputs, ``decode_outputs``, ``postprocess``."""
    import types

    from yolox.models.yolo_head import YOLOXHead
    from yolox.utils import postprocess

    maps = [torch.cat([t[:, :4], t[:, 4:5].clone().sigmoid(), t[:, 5:].clone().sigmoid()], 1) for t in levels]
    fake = types.SimpleNamespace(hw=[m.shape[-2:] for m in maps], strides=list(strides))
    outputs = torch.cat([m.flatten(start_dim=2) for m in maps], dim=2).permute(0, 2, 1)
    outputs = YOLOXHead.decode_outputs(fake, outputs, dtype=levels[0].type())
    return postprocess(outputs, nc, conf, nms)


@pytest.mark.parametrize("seed", range(5))
def test_decode_nms_and_json_equal_yolox_eval(seed: int) -> None:
    """Seeds: 3 and 80 classes, one class, ties (3), > 1000 boxes: torchvision's per-class NMS (4)."""
    import types

    import torchvision  # noqa: F401
    from yolox.evaluators.coco_evaluator import COCOEvaluator

    from yolodbg import bundle, groundtruth
    from yolodbg.evaluate.coco import _image_dets
    from yolodbg.evaluate.decode import PostProcess, decode, postprocess_for, to_original

    g = torch.Generator().manual_seed(seed)
    nc, bs = (3, 80, 1, 5, 3)[seed], 2
    h, w = ((96, 128), (64, 64), (160, 96), (128, 128), (320, 320))[seed]
    shift = torch.tensor([0.0] * 4 + [1.0] + [1.0] * nc).view(1, -1, 1, 1)
    levels = [torch.randn(bs, 5 + nc, h // s, w // s, generator=g) * 2 - shift for s in (8, 16, 32)]
    if seed == 3:  # ties: quantised logits, a class copied onto another
        levels = [(t * 2).round() / 2 for t in levels]
        for t in levels:
            t[:, 6] = t[:, 5]
    scale = 0.5
    b = bundle.from_object(
        {
            "yolodbg": 1,
            "head": "yolox",
            "outputs": levels,
            "input_size": [h, w],
            "targets": {"batch_idx": torch.zeros(0), "cls": torch.zeros(0), "bboxes": torch.zeros(0, 4)},
            "images": [
                {"image_id": i + 1, "orig_size": [h * 2, w * 2], "scale": scale, "pad": [0, 0]}
                for i in range(bs)
            ],
        }
    )
    rec = get_recipe("yolox")
    pp = postprocess_for(b)
    ours = decode(b, None, pp, rec.parse(b))
    ref = _yolox_eval(levels, (8, 16, 32), nc)
    assert any(len(d.scores) for d in ours)
    if seed == 4:
        assert max(len(d.scores) for d in ours) > 1000  # batched_nms takes its per-class branch
    for d, r in zip(ours, ref, strict=True):
        if r is None:
            assert len(d.scores) == 0
            continue
        assert torch.equal(d.boxes, r[:, :4])
        assert torch.equal(d.scores, r[:, 4] * r[:, 5])
        assert d.labels.tolist() == r[:, 6].long().tolist()
    # the json entries: YOLOX's own convert_to_coco_format against what evaluate_bundle scores
    ev = types.SimpleNamespace(
        img_size=(h, w),
        dataloader=types.SimpleNamespace(dataset=types.SimpleNamespace(class_ids=list(range(nc)))),
    )
    ids = list(range(1, bs + 1))
    info = ([h * 2] * bs, [w * 2] * bs)
    want = COCOEvaluator.convert_to_coco_format(
        ev, [None if r is None else r.clone() for r in ref], info, ids
    )
    targets = groundtruth.load_targets(None, b, (h, w), nc)
    mapped = to_original(ours, targets, clip=False)
    got = []
    for i, d in enumerate(mapped):
        im = _image_dets(d, torch.arange(nc).numpy(), pp.json)
        got += [
            (i + 1, int(k), bb, sc)
            for bb, sc, k in zip(im.bbox.tolist(), im.score.tolist(), im.k.tolist(), strict=True)
        ]
    assert [(e["image_id"], e["category_id"], e["bbox"], e["score"]) for e in want] == got
    assert isinstance(pp, PostProcess) and pp.exact
