"""Recipe variants: every documented key parses and round-trips, and changes the numbers as its formula says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import batch, golden_module, ultra_output

from yolodbg import terms
from yolodbg.api import replay
from yolodbg.errors import RecipeError
from yolodbg.recipes import RECIPES, get_recipe
from yolodbg.recipes.base import Param

ROWS = [
    (0, 1, 0.5, 0.5, 0.4, 0.3),
    (0, 2, 0.2, 0.3, 0.1, 0.2),
    (0, 0, 0.52, 0.48, 0.35, 0.4),
    (1, 0, 0.7, 0.6, 0.3, 0.5),
    (1, 1, 0.3, 0.25, 0.05, 0.08),
]
SIZE = (128, 96)
# parameters that only apply together with another one
COMPANIONS = {"box.beta": {"box": "smooth_l1"}, "cls.gamma": {"cls": "focal"}, "cls.alpha": {"cls": "focal"}}
TEXT_VALUES = {"balance": "4/1/0.4"}


def _samples(p: Param) -> list:
    """Non-default values of a parameter, in its own type."""
    if p.choices:
        return [c for c in p.choices if c != p.default]
    if p.key in TEXT_VALUES:
        return [TEXT_VALUES[p.key]]
    if p.type is bool:
        return [not p.default]
    if p.type is int:
        return [(p.default or 1) + 1]
    if p.type is float:
        value = 0.5 if not p.default else p.default * 2
        return [value if p.maximum is None or value <= p.maximum else p.default / 2]
    return ["x"]


KEYS = [(name, p, v) for name, cls in RECIPES.items() for p in cls.PARAMS for v in _samples(p)]


@pytest.mark.parametrize(("name", "param", "value"), KEYS, ids=[f"{n}:{p.key}={v}" for n, p, v in KEYS])
def test_every_key_parses_and_round_trips(name, param, value, tmp_path):
    extra = COMPANIONS.get(param.key, {}) if name in ("yolov8", "yolo26") else {}
    spec = f"{name}:" + ",".join(f"{k}={v}" for k, v in {**extra, param.key: value}.items())
    rec = get_recipe(spec)
    assert rec.params[param.key] == value and type(rec.params[param.key]) is type(value)
    # the text spec rebuilds the same recipe
    assert get_recipe(rec.spec()).params == rec.params
    # and so do its params after a JSON round trip (what explain/compare JSON records)
    loaded = json.loads(json.dumps(rec.params))
    assert type(rec)(loaded).params == rec.params
    # and a TOML recipe file
    value_toml = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    lines = [f'recipe = "{name}"', "[params]"] + [
        f'"{k}" = {json.dumps(v) if isinstance(v, str) else value_toml}'
        for k, v in {**extra, param.key: value}.items()
    ]
    f = tmp_path / "r.toml"
    f.write_text("\n".join(lines) + "\n")
    assert get_recipe(str(f)).params == rec.params


def test_unknown_keys_and_bad_values_are_one_line_errors():
    with pytest.raises(RecipeError) as e:
        get_recipe("yolov8:cls.gama=1")
    msg = str(e.value)
    assert "\n" not in msg and "did you mean cls.gamma" in msg and "valid keys: box, box.beta, cls" in msg
    with pytest.raises(RecipeError, match="box='ciuo'; expected one of iou, giou, diou, ciou, siou, eiou"):
        get_recipe("yolov8:box=ciuo")
    with pytest.raises(RecipeError, match=r"assigner.topk=.ten. is not a valid int"):
        get_recipe("yolov8:assigner.topk=ten")
    with pytest.raises(RecipeError, match=r"box.beta applies to box=smooth_l1 only"):
        get_recipe("yolov8:box.beta=0.1")
    with pytest.raises(RecipeError, match=r"cls.gamma applies to cls=focal\|varifocal\|qfl only"):
        get_recipe("yolo26:cls.gamma=1")
    with pytest.raises(RecipeError, match=r"cls.alpha=1.5; expected a value in"):
        get_recipe("yolov8:cls=varifocal,cls.alpha=1.5")
    assert get_recipe("yolov8:cls=focal,cls.alpha=-1").forms.cls_alpha == -1


# ------------------------------------------------------------------------ the numbers follow the formulas


@pytest.fixture(scope="module")
def scene():
    out = ultra_output(bs=2, size=SIZE, nc=3, seed=5, scale=1.5)
    return out, batch(ROWS)


def _run(scene, spec: str):
    out, targets = scene
    return replay(out, {k: v.clone() for k, v in targets.items()}, recipe=get_recipe(spec), input_size=SIZE)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("form", terms.BOX_FORMS)
def test_box_term_is_the_formula_on_the_positives(scene, form):
    spec = "yolov8:box=" + form + (",box.beta=0.25" if form == "smooth_l1" else "")
    res = _run(scene, spec)
    r = res.result
    fg = r.fg
    stride = r.anchors.stride.view(1, -1, 1).expand(*fg.shape, 1)[fg]
    pred = r.pred_boxes[fg] / stride  # grid units, as the loss sees them
    gt = res.targets.boxes_xyxy().float()[r.gt_of_anchor[fg]] / stride
    per_box = terms.box_loss(form, pred, gt, beta=0.25)
    s = r.normalizers["target_scores_sum"]
    want = 7.5 * float((per_box.double() * r.target_score[fg].double()).sum()) / s
    assert int(fg.sum()) > 5
    assert _rel(res.terms["box"], want) < 1e-5, (form, res.terms["box"], want)
    # the assignment (and so cls, dfl) does not move when only the box function changes
    base = _run(scene, "yolov8")
    assert torch.equal(r.fg, base.fg) and torch.equal(r.gt_of_anchor, base.result.gt_of_anchor)
    assert res.terms["cls"] == base.terms["cls"] and res.terms["dfl"] == base.terms["dfl"]


@pytest.mark.parametrize(
    "spec",
    ["bce", "ce", "focal", "focal,cls.gamma=1.5,cls.alpha=-1", "varifocal", "varifocal,cls.alpha=0.5", "qfl"],
)
def test_cls_term_is_the_formula_on_soft_targets(scene, spec):
    res = _run(scene, "yolov8:cls=" + spec)
    r, rec = res.result, get_recipe("yolov8:cls=" + spec)
    out, _ = scene
    logits = out["scores"].transpose(1, 2)  # (B, N, nc)
    target = torch.zeros_like(logits)
    rows = r.gt_of_anchor.clamp(min=0)
    cls_of_anchor = res.targets.cls[rows]
    target.scatter_(2, cls_of_anchor.unsqueeze(-1), r.target_score.unsqueeze(-1).float())
    target = target * r.fg.unsqueeze(-1)
    f = rec.forms
    el = terms.cls_loss(f.cls, logits, target, f.cls_gamma, f.cls_alpha)
    want = 0.5 * float(el.double().sum()) / r.normalizers["target_scores_sum"]
    assert _rel(res.terms["cls"], want) < 1e-5, (spec, res.terms["cls"], want)


def test_identities_at_recipe_level(scene):
    base = _run(scene, "yolov8")
    # focal with γ = 0 and α off, qfl with β = 0: BCE to the bit
    assert _run(scene, "yolov8:cls=focal,cls.gamma=0,cls.alpha=-1").terms == base.terms
    assert _run(scene, "yolov8:cls=qfl,cls.gamma=0").terms == base.terms
    # smooth L1 with β = 0 is L1
    assert _run(scene, "yolov8:box=smooth_l1,box.beta=0").terms == _run(scene, "yolov8:box=l1").terms
    # the penalties are non-negative on every pair: iou ≤ giou, diou ≤ ciou (same positives and weights)
    box = {k: _run(scene, f"yolov8:box={k}").terms["box"] for k in ("iou", "giou", "diou", "ciou")}
    assert box["iou"] <= box["giou"] and box["diou"] <= box["ciou"] and box["iou"] <= box["diou"]
    # focal only shrinks BCE; ce has no background class, so it is far below BCE here
    assert _run(scene, "yolov8:cls=focal").terms["cls"] < base.terms["cls"]
    assert _run(scene, "yolov8:cls=ce").result.ledger["cls"].values[~base.fg.reshape(-1)].abs().sum() == 0


def test_gains_scale_their_term_and_the_objective(scene):
    base = _run(scene, "yolov8")
    for term, key in (("box", "gain.box"), ("cls", "gain.cls"), ("dfl", "gain.dfl")):
        res = _run(scene, f"yolov8:{key}=3.0")
        default = get_recipe("yolov8").params[key]
        assert _rel(res.terms[term], base.terms[term] * 3.0 / default) < 1e-6
        others = [t for t in base.terms if t != term]
        assert others and all(res.terms[t] == base.terms[t] for t in others)


def test_assigner_keys_change_the_positives(scene):
    base = _run(scene, "yolov8")
    assert int(_run(scene, "yolov8:assigner.topk=3").fg.sum()) < int(base.fg.sum())
    one = _run(scene, "yolov8:assigner.topk2=1")
    per_gt = torch.bincount(one.result.gt_of_anchor[one.fg], minlength=len(ROWS))
    assert int(per_gt.max()) <= 1
    assert not torch.equal(
        _run(scene, "yolov8:assigner.alpha=1.0,assigner.beta=2.0").target_score, base.target_score
    )


def test_branch_runs_v8_loss_on_one_branch_of_an_end_to_end_output():
    out = {
        "one2many": ultra_output(bs=2, size=SIZE, seed=7),
        "one2one": ultra_output(bs=2, size=SIZE, seed=8),
    }
    tg = batch(ROWS)
    e2e = replay(out, {k: v.clone() for k, v in tg.items()}, recipe="yolo26", input_size=SIZE)
    o2m = replay(out, {k: v.clone() for k, v in tg.items()}, recipe="yolov8:branch=one2many", input_size=SIZE)
    # the one-to-many branch of E2ELoss is v8DetectionLoss with the same TAL parameters
    assert o2m.terms == {k[4:]: v for k, v in e2e.result.extra_terms.items()}
    assert torch.equal(o2m.fg, e2e.fg)
    with pytest.raises(RecipeError, match="use the yolo26 recipe, or yolov8:branch=one2many"):
        replay(out, {k: v.clone() for k, v in tg.items()}, recipe="yolov8", input_size=SIZE)
    with pytest.raises(RecipeError, match="single-branch output; drop branch="):
        replay(ultra_output(bs=2, size=SIZE), tg, recipe="yolov8:branch=one2one", input_size=SIZE)


# ------------------------------------------------------------------------------------ recipe files (TOML)


def test_recipe_file(tmp_path):
    f = tmp_path / "ours.toml"
    f.write_text(
        'recipe = "yolo11:box=giou"\nlabel = "ours-v3"\n[params]\ncls = "focal"\n"cls.gamma" = 1.5\n'
        "gain.cls = 1.0\nassigner.topk = 13\n"
    )
    rec = get_recipe(str(f))
    assert rec.label == "ours-v3" and rec.name == "yolov8"
    assert rec.spec() == "yolov8:box=giou,cls=focal,cls.gamma=1.5,assigner.topk=13,gain.cls=1.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recipe = \n", "not valid TOML"),
        ("[params]\nbox = 'giou'\n", 'missing recipe = "NAME"'),
        ('recipe = "yolov8"\nbox = "giou"\n', "unknown top-level key(s) box; expected recipe, label, params"),
        ('recipe = "yolov8"\n[params]\n"assigner.topk" = 13.5\n', "assigner.topk='13.5' is not a valid int"),
        ('recipe = "yolov8"\n[params]\nbx = "giou"\n', "unknown parameter 'bx'"),
        ('recipe = "yolov9"\n', "unknown recipe 'yolov9'"),
        ('recipe = "yolov8"\n[params]\nbox = ["giou"]\n', "params.box is a list"),
    ],
)
def test_recipe_file_errors_name_the_file(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(RecipeError) as e:
        get_recipe(str(f))
    assert str(f) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RecipeError, match="no such recipe file"):
        get_recipe(str(tmp_path / "missing.toml"))


# ---------------------------------------------------------------------- parity: top-k 13, alpha 1 (Ultralytics)

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
TAL13_SPEC = "yolov8:assigner.topk=13,assigner.alpha=1.0"


def _tal13_cases():
    C = golden_module("cases.py")
    data = C.load_golden(GOLDEN_DIR / "yolov8_cases.pt")
    cases = [c for c in data["cases"] if c["params"] == {"assigner.topk": 13, "assigner.alpha": 1.0}]
    return C, data, cases


def test_tal13_variant_matches_the_golden_ultralytics_numbers():
    C, data, cases = _tal13_cases()
    assert cases, "the golden file holds no top-k 13 / alpha 1 case"
    for case in cases:
        outputs, targets, imgsz = C.golden_inputs(data, case)
        preds = C.outputs_for_form(outputs, case["form"])
        res, explain = C.replay_explained(
            lambda preds=preds, targets=targets: replay(preds, targets, recipe=TAL13_SPEC), topk=13
        )
        problems = C.compare(res, C.unpack_expected(case["expected"]), imgsz, explain)
        assert not problems, (case["name"], C.provenance(data), problems)


@pytest.mark.parity
def test_tal13_variant_matches_live_ultralytics_task_aligned_assigner():
    pytest.importorskip("ultralytics")
    C, data, cases = _tal13_cases()
    case = cases[0]
    outputs, targets, imgsz = C.golden_inputs(data, case)
    # the reference: v8DetectionLoss with TaskAlignedAssigner(topk=13, alpha=1.0, beta=6.0)
    exp = C.ultralytics_expected(outputs, targets, {"assigner.topk": 13, "assigner.alpha": 1.0})
    res = replay(outputs, targets, recipe=TAL13_SPEC)
    problems = C.compare(res, exp, imgsz)
    assert not problems, problems
    worst = max(_rel(res.terms[k], exp["items"][k]) for k in ("box", "cls", "dfl"))
    assert worst <= 1e-5 and math.isfinite(res.objective)
