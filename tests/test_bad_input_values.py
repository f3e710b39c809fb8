"""Hostile input, "values" and "structure" classes: every case exits 2 with one line, never 3.

Each case runs the CLI in-process and asserts the exit code, that stderr is exactly one
``yolodbg: error:`` line naming the file and the field (or option/parameter) at fault, and
that no file under the test folder changed (sha256 of every file before and after). The
classes and their case counts are listed in ``CLASSES`` at the bottom (a test checks them).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import bundle, groundtruth
from yolodbg.cli import main
from yolodbg.errors import GroundTruthError, RecipeError
from yolodbg.recipes import RECIPES, get_recipe
from yolodbg.recipes.base import INT_MAX

SIZE = (128, 96)
ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (1, 0, 0.7, 0.6, 0.3, 0.5)]
IMAGES = [{"image_id": 7, "file_name": "a.jpg"}, {"image_id": 9, "file_name": "b.jpg"}]


# --------------------------------------------------------------------------------------------- helpers


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(args: list[str], root: Path, *fragments: str, code: int = 2) -> str:
    """Run ``yolodbg ARGS``; assert exit ``code``, one error line holding every fragment, no file changed."""
    before = _hashes(root)
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert _hashes(root) == before, "an input file changed"
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == code, (res.exit_code, res.stderr, res.exception)
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("yolodbg: error: ") and "internal error" not in line, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def _save(path: Path, **fields) -> Path:
    """A canonical bundle dict written with torch.save (fields may hold anything, as a hand edit would)."""
    doc = {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": ultra_output(bs=2, size=SIZE, nc=3, seed=1),
        "input_size": list(SIZE),
        "images": [dict(im) for im in IMAGES],
        "targets": batch(ROWS),
        "meta": {},
    }
    doc.update(fields)
    torch.save(doc, path)
    return path


@pytest.fixture
def preds(tmp_path):
    return _save(tmp_path / "p.pt")


def _coco(**overrides) -> dict:
    doc = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 96, "height": 128},
            {"id": 9, "file_name": "b.jpg", "width": 96, "height": 128},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 9, "category_id": 3, "bbox": [5, 5, 20, 20]},
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 3, 5)],
    }
    doc.update(overrides)
    return doc


def _write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))  # json.dumps writes NaN/Infinity, as hand-made files do
    return path


def test_the_fixtures_are_valid(preds, tmp_path):
    """The baseline every case breaks one thing of: it runs (exit 0)."""
    gt = _write_json(tmp_path / "ann.json", _coco())
    assert CliRunner().invoke(main, ["explain", str(preds), "--gt", str(gt)]).exit_code == 0
    assert CliRunner().invoke(main, ["explain", str(preds)]).exit_code == 0


# ------------------------------------------------------------------------------------ options (values)

OPTION_CASES = [
    (["--imgsz", "nan"], "--imgsz"),
    (["--imgsz", "inf"], "--imgsz"),
    (["--imgsz", "-inf"], "--imgsz"),
    (["--imgsz", "0"], "--imgsz"),
    (["--imgsz", "-640"], "--imgsz"),
    (["--imgsz", "1e12"], "--imgsz"),
    (["--imgsz", "0.5"], "--imgsz"),
    (["--imgsz", "640.5"], "--imgsz"),
    (["--imgsz", "abc"], "--imgsz"),
    (["--imgsz", "1,2,3"], "--imgsz"),
    (["--imgsz", "128,nan"], "--imgsz"),
    (["--strides", "0"], "--strides"),
    (["--strides", "nan"], "--strides"),
    (["--strides", "8,16,inf"], "--strides"),
    (["--strides", "-8,16,32"], "--strides"),
    (["--strides", "1e30"], "--strides"),
    (["--strides", "a,b"], "--strides"),
    (["--nc", "0"], "--nc"),
    (["--nc", "-3"], "--nc"),
    (["--nc", "1.5"], "--nc"),
    (["--nc", "nan"], "--nc"),
    (["--top", "-1"], "--top"),
    (["--top", "nan"], "--top"),
]


@pytest.mark.parametrize(("extra", "option"), OPTION_CASES, ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_bad_option_values_of_explain(preds, tmp_path, extra, option):
    line = refused(["explain", preds, *extra], tmp_path, option)
    assert extra[1] in line  # the value is named


CHECK_OPTION_CASES = [
    (["--rtol", "nan"], "--rtol"),
    (["--rtol", "inf"], "--rtol"),
    (["--rtol", "-1"], "--rtol"),
    (["--rtol", "x"], "--rtol"),
    (["--atol", "nan"], "--atol"),
    (["--atol", "-inf"], "--atol"),
    (["--atol", "-1e-9"], "--atol"),
]


@pytest.mark.parametrize(
    ("extra", "option"), CHECK_OPTION_CASES, ids=[" ".join(c[0]) for c in CHECK_OPTION_CASES]
)
def test_bad_tolerances_of_check(tmp_path, extra, option):
    snap = _write_json(tmp_path / "s.json", {"schema": "yolodbg.snapshot/1"})
    refused(["check", snap, *extra], tmp_path, option, extra[1])


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "{dir}", "--workers", "-1"],
        ["scan", "{dir}", "--workers", "-100000"],
        ["scan", "{dir}", "--top", "-5"],
        ["trend", "{dir}", "--window", "0"],
        ["capture", "--model", "m.pt", "--gt", "{preds}", "--imgsz", "1000000"],
        ["capture", "--model", "m.pt", "--gt", "{preds}", "--imgsz", "nan"],
        ["compare", "{preds}", "-r", "yolov8", "-r", "yolov8:gain.box=1", "--top", "-1"],
    ],
)
def test_bad_counts_of_other_commands(preds, tmp_path, args):
    args = [a.format(dir=tmp_path, preds=preds) for a in args]
    option = args[-2]  # the option given the bad value
    refused(args, tmp_path, option)


# ----------------------------------------------------------------------------- recipe variants (values)


def _bad_values(p) -> list[str]:
    """Values outside what a parameter declares: non-finite, out of its range, of the wrong type."""
    if p.type is bool:
        return ["2", "-1", "maybe", "1.0", "nan"]
    if p.type is str:
        return ["no-such-choice"] if p.choices else []
    out = ["nan", "-nan", "inf", "-inf", "1e999", "abc", ""]
    if p.type is int:
        out += ["2.5", "1e3", "1e20", str(INT_MAX + 1), "99999999999999999999999", "0x10"]
    lo = p.above if p.above is not None else p.minimum
    if lo is not None:
        out.append(f"{lo - 1:g}" if p.type is float or p.above is None else f"{lo:g}")
        if p.above is not None:
            out.append(f"{p.above:g}")
    if p.maximum is not None:
        out.append(f"{p.maximum + 1:g}")
    return out


VARIANT_CASES = [
    (name, p.key, v) for name, cls in RECIPES.items() for p in cls.PARAMS for v in _bad_values(p)
]


@pytest.mark.parametrize(
    ("name", "key", "value"), VARIANT_CASES, ids=[f"{n}:{k}={v}" for n, k, v in VARIANT_CASES]
)
def test_bad_variant_values_are_refused_when_parsed(name, key, value, tmp_path):
    line = refused(["recipes", f"{name}:{key}={value}"], tmp_path, f"recipe {name}: {key}=")
    assert "expected" in line


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("yolov8:assigner.topk=100000", "assigner.topk=100000 exceeds the 252 anchors"),
        ("yolov8:assigner.topk2=5000", "assigner.topk2=5000 exceeds"),
        ("yolov8:assigner.alpha=-1", "assigner.alpha=-1.0 is out of range"),
        ("yolov8:gain.box=nan", "gain.box=nan"),
        ("yolov8:assigner.eps=0", "(0, 1]"),
        ("yolov8:cls=focal,cls.alpha=nan", "cls.alpha=nan"),
        ("yolov8:cls=varifocal,cls.alpha=-1", "cls.alpha=-1"),
        ("yolov8:box=smooth_l1,box.beta=nan", "box.beta=nan"),
    ],
)
def test_bad_variants_of_explain(preds, tmp_path, spec, fragment):
    refused(["explain", preds, "-r", spec], tmp_path, fragment)


@pytest.mark.parametrize(
    ("balance", "fragment"),
    [("nan/1/1", "balance='nan/1/1'"), ("inf/1/1", "inf"), ("-1/1/1", "-1/1/1"), ("", "balance=''")],
)
def test_bad_yolov5_balance_is_refused_when_parsed(tmp_path, balance, fragment):
    refused(["recipes", f"yolov5:balance={balance}"], tmp_path, "recipe yolov5:", fragment, "finite weights")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("yolov8:gain.box=1,gain.box=2", "gain.box is given twice ('1' and '2')"),
        ("yolov8:assigner.topk", "is not key=value"),
        ("yolov8:=3", "is not key=value"),
        ("yolov8:gain.box=1,,", "is not key=value"),
    ],
)
def test_malformed_variant_specs(tmp_path, spec, fragment):
    refused(["recipes", spec], tmp_path, f"recipe {spec!r}", fragment)


def test_values_inside_the_ranges_still_parse():
    """The declared ranges keep every default and the documented special values."""
    assert RECIPES, "no registered recipe to check"
    for cls in RECIPES.values():
        assert cls().params == {p.key: p.default for p in cls.PARAMS}
    assert get_recipe("yolov8:assigner.min_side=0,assigner.alpha=0,gain.box=0").params["gain.box"] == 0.0
    assert get_recipe("yolov8:cls=focal,cls.alpha=-1").params["cls.alpha"] == -1.0
    assert get_recipe("yolox:use_l1=1").params["use_l1"] is True
    assert get_recipe("yolov5:gr=0,assigner.g=1,label_smoothing=1").params["gr"] == 0.0
    assert get_recipe("yolov8:assigner.topk= 13").params["assigner.topk"] == 13


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([(name, p) for name, cls in RECIPES.items() for p in cls.PARAMS]),
    st.one_of(
        st.text(max_size=12),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e999", "true", "auto", "none", " 7 ", "1_0", "0x1f"]),
    ),
)
def test_random_variant_values_give_a_recipe_or_a_recipe_error(pair, value):
    """Junk for any parameter: a valid recipe (value in range) or a one-line RecipeError, nothing else."""
    name, p = pair
    value = value.replace(",", ";")  # a comma would start another key=value
    try:
        rec = get_recipe(f"{name}:{p.key}={value}")
    except RecipeError as e:
        assert "\n" not in str(e) and (p.key in str(e) or "key=value" in str(e))
        return
    got = rec.params[p.key]
    if isinstance(got, float):
        assert math.isfinite(got) and p.in_range(got)
    if isinstance(got, int) and not isinstance(got, bool):
        assert p.in_range(got)


# ------------------------------------------------------------------------------ recipe files (structure)

TOML_CASES = [
    ('recipe = "yolox"\n[params]\nuse_l1 = 1\n', "params.use_l1 = 1 is an integer; expected a TOML boolean"),
    ('recipe = "yolov8"\n[params]\n"gain.box" = "7.5"\n', "params.gain.box = '7.5' is a string"),
    ('recipe = "yolov8"\n[params]\nbox = 3\n', "params.box = 3 is an integer; expected a TOML string"),
    ('recipe = "yolov8"\n[params]\n"assigner.topk" = true\n', "params.assigner.topk = True is a boolean"),
    ('recipe = "yolov8"\n[params]\n"assigner.topk" = 13.5\n', "assigner.topk='13.5' is not a valid int"),
    (
        'recipe = "yolov8"\n[params]\n"assigner.topk" = 99999999999\n',
        "assigner.topk=99999999999 is out of range",
    ),
    ('recipe = "yolov8"\n[params]\n"gain.box" = nan\n', "gain.box=nan is out of range"),
    ('recipe = "yolov8"\n[params]\n"gain.box" = -inf\n', "gain.box=-inf is out of range"),
    ('recipe = "yolov8"\n[params]\n"assigner.eps" = 0.0\n', "assigner.eps=0.0 is out of range"),
    ('recipe = "yolov8"\n[params]\nx = 2024-01-01\n', "params.x is a date"),
    ('recipe = "yolov8"\nparams = [1]\n', "params must be a table"),
    ('recipe = "yolov8"\nlabel = 3\n', "label must be a string"),
    ("recipe = 5\n", 'missing recipe = "NAME"'),
    ('recipe = "yolov8"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ('recipe = "yolov8"\n[params]\n' + ".".join(["a"] * 3_000) + " = 1\n", "nested too deeply"),
]


@pytest.mark.parametrize(("text", "fragment"), TOML_CASES, ids=[f"toml{i}" for i in range(len(TOML_CASES))])
def test_bad_recipe_files(tmp_path, text, fragment):
    f = tmp_path / "r.toml"
    f.write_text(text)
    refused(["recipes", f], tmp_path, str(f), fragment)


def test_recipe_file_not_utf8(tmp_path):
    f = tmp_path / "r.toml"
    f.write_bytes(b'recipe = "yolov8"\nlabel = "\xff\xfe"\n')
    refused(["recipes", f], tmp_path, str(f), "UTF-8")


# ------------------------------------------------------------------------------ COCO json (values)

COCO_VALUE_CASES = [
    ("bbox NaN", {"bbox": [float("nan"), 1, 2, 3]}, "annotations[0].bbox"),
    ("bbox Infinity", {"bbox": [1, 1, float("inf"), 3]}, "annotations[0].bbox"),
    ("bbox -Infinity", {"bbox": [1, 1, 2, float("-inf")]}, "annotations[0].bbox"),
    ("bbox string", {"bbox": [1, "2", 3, 4]}, "annotations[0].bbox"),
    ("bbox booleans", {"bbox": [True, 1, 2, 3]}, "annotations[0].bbox"),
    ("bbox 3 numbers", {"bbox": [1, 2, 3]}, "annotations[0].bbox has 3 numbers"),
    ("bbox 5 numbers", {"bbox": [1, 2, 3, 4, 5]}, "annotations[0].bbox has 5 numbers"),
    ("bbox not a list", {"bbox": "1 2 3 4"}, "annotations[0].bbox"),
    ("bbox missing", {"bbox": None}, "annotations[0].bbox"),
    ("category 1.5", {"category_id": 1.5}, "annotations[0].category_id"),
    ("category string", {"category_id": "1"}, "annotations[0].category_id"),
    ("category bool", {"category_id": True}, "annotations[0].category_id"),
    ("category unknown", {"category_id": 8}, "category_id 8"),
    ("iscrowd 2", {"iscrowd": 2}, "annotations[0].iscrowd"),
    ("bbox overflowing", {"bbox": [1.7e308, 1, 1.7e308, 3]}, "annotation 1: the box overflows"),
    ("image_id a list", {"image_id": [7]}, "annotations[0].image_id"),
    ("image_id an object", {"image_id": {"id": 7}}, "annotations[0].image_id"),
]


@pytest.mark.parametrize(
    ("case", "change", "fragment"), COCO_VALUE_CASES, ids=[c[0] for c in COCO_VALUE_CASES]
)
def test_bad_coco_values(preds, tmp_path, case, change, fragment):
    doc = _coco()
    doc["annotations"][0].update(change)
    gt = _write_json(tmp_path / "ann.json", doc)
    refused(["explain", preds, "--gt", gt], tmp_path, str(gt), fragment)


@pytest.mark.parametrize("value", [0, -5, float("nan"), float("inf"), "128", None, True])
def test_bad_coco_image_sizes(preds, tmp_path, value):
    doc = _coco()
    doc["images"][0]["height"] = value
    gt = _write_json(tmp_path / "ann.json", doc)
    refused(["explain", preds, "--gt", gt], tmp_path, str(gt), "images[0].height")


def test_more_categories_than_classes(preds, tmp_path):
    gt = _write_json(tmp_path / "ann.json", _coco(categories=[{"id": c} for c in range(1, 6)]))
    refused(["explain", preds, "--gt", gt], tmp_path, str(gt), "5 categories", "3 classes")


def test_zero_and_negative_box_sides_are_a_documented_warning(tmp_path):
    """As the frameworks' dataloaders drop them, zero-area COCO/YOLO boxes are left out with a warning."""
    doc = _coco()
    doc["annotations"][0]["bbox"] = [10, 20, 0, 40]
    doc["annotations"][1]["bbox"] = [5, 5, -3, 20]
    b = bundle.load(_save(tmp_path / "p.pt"))
    t = groundtruth.from_coco(_write_json(tmp_path / "ann.json", doc), b, SIZE, nc=3)
    assert len(t) == 0 and [i.reason for i in t.ignored] == ["degenerate", "degenerate"]
    assert t.warnings and all("left out" in w for w in t.warnings)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text("0 0.5 0.5 0 0.2\n1 0.5 0.5 0.2 -0.1\n")
    t = groundtruth.from_yolo_dir(labels, b, SIZE, nc=3)
    line_warnings = [w for w in t.warnings if "a.txt:1" in w or "a.txt:2" in w]
    assert len(t) == 0 and len(t.ignored) == 2 and len(line_warnings) == 2
    assert all("left out" in w for w in line_warnings)


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("0 0.5 0.5 1.2 0.2\n", "values outside [0, 1]"),
        ("0 -0.01 0.5 0.2 0.2\n", "values outside [0, 1]"),
        ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n", "1 duplicated line(s)"),
    ],
)
def test_label_files_the_frameworks_would_reject_are_read_with_a_warning(tmp_path, text, warning):
    """Documented warnings: Ultralytics/YOLOv5 drop such an image or deduplicate; yolodbg reads it and says so."""
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(text)
    t = groundtruth.from_yolo_dir(labels, bundle.load(_save(tmp_path / "p.pt")), SIZE, nc=3)
    assert len(t) >= 1 and any(warning in w and "a.txt" in w for w in t.warnings), t.warnings
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.4 0.4 0.1 0.1\n")
    t = groundtruth.from_yolo_dir(plain, bundle.load(tmp_path / "p.pt"), SIZE, nc=3)
    assert not [w for w in t.warnings if "a.txt" in w]


# --------------------------------------------------------------------------- COCO json (structure)

COCO_STRUCTURE_CASES = [
    ("top level a list", [], "not a COCO detection file"),
    ("top level a string", "images", "not a COCO detection file"),
    ("top level null", None, "not a COCO detection file"),
    ("no annotations", {"images": []}, "not a COCO detection file"),
    ("images a dict", _coco(images={"7": {}}), "images is an object"),
    ("annotations a number", _coco(annotations=3), "annotations is a number"),
    ("categories a string", _coco(categories="person"), "categories is a string"),
    ("image not an object", _coco(images=[7, 9]), "images[0] is a number"),
    ("annotation not an object", _coco(annotations=[[1, 2, 3, 4]]), "annotations[0] is a list"),
    ("image without id", _coco(images=[{"file_name": "a.jpg"}]), "images[0] has no id"),
    ("file_name a number", _coco(images=[{"id": 7, "file_name": 7}]), "images[0].file_name"),
    ("file_name a list", _coco(images=[{"id": 7, "file_name": ["a.jpg"]}]), "images[0].file_name"),
    ("annotation without id", None, "annotations[1] has no id"),
    ("category without id", _coco(categories=[{"name": "x"}]), "categories[0] has no id"),
    ("image id a list", _coco(images=[{"id": [7]}]), "images[0].id"),
    ("annotation id a string", None, "annotations[0].id"),
    ("category id a float", _coco(categories=[{"id": 1.0}]), "categories[0].id"),
    ("duplicate image ids", None, "images[1].id 7 is used twice"),
    ("duplicate annotation ids", None, "annotations[1].id 1 is used twice"),
    ("duplicate category ids", _coco(categories=[{"id": 1}, {"id": 1}]), "categories[1].id 1 is used twice"),
    ("image_id of no image", None, "annotations[0].image_id 8 is not the id of any image"),
    ("image_id missing", None, "annotations[0] lacks image_id"),
    ("category_id missing", None, "annotations[0] lacks category_id"),
]


def _structure_doc(case: str, doc):
    if doc is not None or case.startswith("top level"):
        return doc
    doc = _coco()
    anns, imgs = doc["annotations"], doc["images"]
    if case == "annotation without id":
        del anns[1]["id"]
    elif case == "annotation id a string":
        anns[0]["id"] = "one"
    elif case == "duplicate image ids":
        imgs[1]["id"] = 7
    elif case == "duplicate annotation ids":
        anns[1]["id"] = 1
    elif case == "image_id of no image":
        anns[0]["image_id"] = 8
    elif case == "image_id missing":
        del anns[0]["image_id"]
    elif case == "category_id missing":
        del anns[0]["category_id"]
    return doc


@pytest.mark.parametrize(
    ("case", "doc", "fragment"), COCO_STRUCTURE_CASES, ids=[c[0] for c in COCO_STRUCTURE_CASES]
)
def test_bad_coco_structure(preds, tmp_path, case, doc, fragment):
    gt = _write_json(tmp_path / "ann.json", _structure_doc(case, doc))
    refused(["explain", preds, "--gt", gt], tmp_path, str(gt), fragment)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"images": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"images": [], "annotations": [], "x": "\xff"}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (
            b'{"images": [], "annotations": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested too deeply",
        ),
    ],
    ids=["truncated", "empty", "not UTF-8", "nested 100k deep", "nested 100k deep inside"],
)
def test_unreadable_coco_files(preds, tmp_path, content, fragment):
    gt = tmp_path / "ann.json"
    gt.write_bytes(content)
    refused(["explain", preds, "--gt", gt], tmp_path, str(gt), fragment)


@pytest.mark.parametrize("command", ["scan", "trend"])
def test_a_bad_coco_file_stops_scan_and_trend_once(preds, tmp_path, command):
    """A --gt shared by every bundle is checked once, before the work: one line, not a report of failures."""
    second = _save(tmp_path / "q.pt")
    gt = _write_json(tmp_path / "ann.json", _coco(images=[{"file_name": "a.jpg"}]))
    refused([command, preds, second, "--gt", gt, "--no-map"], tmp_path, str(gt), "has no id")


# ------------------------------------------------------------------------- YOLO labels (values, structure)

LABEL_CASES = [
    ("nan x", "0 nan 0.5 0.2 0.2", "non-finite"),
    ("inf w", "0 0.5 0.5 inf 0.2", "non-finite"),
    ("nan class", "nan 0.5 0.5 0.2 0.2", "non-finite"),
    ("inf class", "inf 0.5 0.5 0.2 0.2", "non-finite"),
    ("fractional class", "1.5 0.5 0.5 0.2 0.2", "class 1.5 is not a whole number"),
    ("negative class", "-1 0.5 0.5 0.2 0.2", "class -1 but the outputs have 3 classes"),
    ("class = nc", "3 0.5 0.5 0.2 0.2", "class 3 but the outputs have 3 classes"),
    ("words", "person 0.5 0.5 0.2 0.2", "not numbers"),
    ("4 fields", "0 0.5 0.5 0.2", "4 fields"),
    ("6 fields", "0 0.5 0.5 0.2 0.2 0.9", "6 fields"),
    ("overflowing w", "0 0.5 0.5 1e308 0.5", "overflows"),
    ("overflowing x", "0 1e308 0.5 0.1 0.5", "overflows"),
    ("polygon", "0 0.1 0.1 0.4 0.1 0.4 0.3", "a segment or keypoint label"),
]


@pytest.mark.parametrize(("case", "line", "fragment"), LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_bad_yolo_label_values(preds, tmp_path, case, line, fragment):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    refused(["explain", preds, "--gt", labels], tmp_path, str(labels / "a.txt") + ":2", fragment)


def test_label_file_that_is_a_folder(preds, tmp_path):
    labels = tmp_path / "labels"
    (labels / "a.txt").mkdir(parents=True)
    refused(["explain", preds, "--gt", labels], tmp_path, str(labels / "a.txt"), "not a regular file")


def test_label_file_not_utf8(preds, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.1\n\xff\xfe 1\n")
    refused(["explain", preds, "--gt", labels], tmp_path, str(labels / "a.txt"), "not UTF-8")


def test_label_file_given_where_a_folder_or_json_is_expected(preds, tmp_path):
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.1 0.1\n")
    refused(["explain", preds, "--gt", label], tmp_path, str(label), "not valid JSON")


# --------------------------------------------------------------------------- bundle fields (values)

BUNDLE_CASES = [
    ("scale text", {"images": [{**IMAGES[0], "scale": "abc"}, IMAGES[1]]}, "images[0].scale"),
    ("scale 0", {"images": [{**IMAGES[0], "scale": 0}, IMAGES[1]]}, "images[0].scale"),
    ("scale negative", {"images": [{**IMAGES[0], "scale": -1.0}, IMAGES[1]]}, "images[0].scale"),
    ("scale NaN", {"images": [{**IMAGES[0], "scale": float("nan")}, IMAGES[1]]}, "images[0].scale"),
    ("scale inf", {"images": [{**IMAGES[0], "scale": float("inf")}, IMAGES[1]]}, "images[0].scale"),
    ("scale 3 values", {"images": [{**IMAGES[0], "scale": [1, 1, 1]}, IMAGES[1]]}, "images[0].scale"),
    ("scale a dict", {"images": [{**IMAGES[0], "scale": {"y": 1}}, IMAGES[1]]}, "images[0].scale"),
    ("pad 1 value", {"images": [{**IMAGES[0], "scale": 1.0, "pad": [1]}, IMAGES[1]]}, "images[0].pad"),
    ("pad text", {"images": [{**IMAGES[0], "scale": 1.0, "pad": "ab"}, IMAGES[1]]}, "images[0].pad"),
    (
        "pad NaN",
        {"images": [{**IMAGES[0], "scale": 1.0, "pad": [float("nan"), 0]}, IMAGES[1]]},
        "images[0].pad",
    ),
    ("pad negative", {"images": [{**IMAGES[0], "scale": 1.0, "pad": [-4, 0]}, IMAGES[1]]}, "images[0].pad"),
    ("orig_size 0", {"images": [{**IMAGES[0], "orig_size": 0}, IMAGES[1]]}, "images[0].orig_size"),
    (
        "orig_size [0, 96]",
        {"images": [{**IMAGES[0], "orig_size": [0, 96]}, IMAGES[1]]},
        "images[0].orig_size",
    ),
    (
        "orig_size negative",
        {"images": [{**IMAGES[0], "orig_size": [-5, 5]}, IMAGES[1]]},
        "images[0].orig_size",
    ),
    ("orig_size NaN", {"images": [{**IMAGES[0], "orig_size": [float("nan"), 5]}, IMAGES[1]]}, "orig_size"),
    ("orig_size text", {"images": [{**IMAGES[0], "orig_size": "64"}, IMAGES[1]]}, "images[0].orig_size"),
    ("orig_size fraction", {"images": [{**IMAGES[0], "orig_size": [1.5, 3]}, IMAGES[1]]}, "orig_size"),
    ("image_id a list", {"images": [{**IMAGES[0], "image_id": [7]}, IMAGES[1]]}, "images[0].image_id"),
    ("image_id NaN", {"images": [{**IMAGES[0], "image_id": float("nan")}, IMAGES[1]]}, "images[0].image_id"),
    ("file_name a number", {"images": [{**IMAGES[0], "file_name": 5}, IMAGES[1]]}, "images[0].file_name"),
    ("input_size [0, 0]", {"input_size": [0, 0]}, "input_size"),
    ("input_size text", {"input_size": "128"}, "input_size"),
    ("input_size 1 value", {"input_size": [128]}, "input_size"),
    ("input_size NaN", {"input_size": [float("nan"), 96]}, "input_size"),
    ("strides 0", {"strides": [0, 16, 32]}, "strides"),
    ("strides NaN", {"strides": [8, float("nan"), 32]}, "strides"),
    ("strides text", {"strides": "abc"}, "strides"),
    ("category_ids repeated", {"category_ids": [1, 1, 5]}, "category_ids lists 1 twice"),
    ("category_ids fractional", {"category_ids": [1.5, 3, 5]}, "category_ids"),
    ("category_ids text", {"category_ids": "abc"}, "category_ids"),
    ("category_ids booleans", {"category_ids": [True, False, 5]}, "category_ids"),
    (
        "meta.imgsz NaN",
        {"meta": {"imgsz": float("nan")}, "images": [{**IMAGES[0], "orig_size": [64, 64]}, IMAGES[1]]},
        "meta.imgsz",
    ),
    (
        "meta.imgsz inf",
        {"meta": {"imgsz": float("inf")}, "images": [{**IMAGES[0], "orig_size": [64, 64]}, IMAGES[1]]},
        "meta.imgsz",
    ),
    (
        "meta.imgsz 0",
        {"meta": {"imgsz": 0}, "images": [{**IMAGES[0], "orig_size": [64, 64]}, IMAGES[1]]},
        "meta.imgsz",
    ),
    (
        "meta.imgsz text",
        {"meta": {"imgsz": "big"}, "images": [{**IMAGES[0], "orig_size": [64, 64]}, IMAGES[1]]},
        "meta.imgsz",
    ),
    ("meta a list", {"meta": [1]}, "meta is a list"),
    ("images a dict", {"images": {"0": IMAGES[0]}}, "images is a dict"),
    ("images entry a string", {"images": ["a.jpg", "b.jpg"]}, "images[0] is a str"),
    ("input_size 1e300", {"input_size": [1e300, 96]}, "input_size"),
    ("input_size huge", {"input_size": [10**9, 96]}, "input_size"),
    ("strides huge", {"strides": [8, 16, 1e9]}, "strides"),
    ("meta a tensor", {"meta": torch.zeros(3, 3)}, "meta is a Tensor"),
    ("version a tensor", {"yolodbg": torch.zeros(3, 3)}, "bundle format version"),
    ("version 2", {"yolodbg": 2}, "bundle format version 2"),
    ("head a tensor", {"head": torch.zeros(3, 3)}, "expected one of ultralytics"),
    ("head unknown", {"head": "yolov9"}, "head is 'yolov9'"),
]


@pytest.mark.parametrize(("case", "fields", "fragment"), BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_bad_bundle_fields(tmp_path, case, fields, fragment):
    preds = _save(tmp_path / "p.pt", **fields)
    gt = _write_json(tmp_path / "ann.json", _coco())
    refused(["explain", preds, "--gt", gt], tmp_path, str(preds), fragment)


TARGET_CASES = [
    (
        "bboxes NaN",
        {"bboxes": torch.tensor([[0.5, float("nan"), 0.1, 0.1]])},
        "targets.bboxes[0] is not finite",
    ),
    (
        "bboxes inf",
        {"bboxes": torch.tensor([[0.5, 0.5, float("inf"), 0.1]])},
        "targets.bboxes[0] is not finite",
    ),
    ("bboxes 3 columns", {"bboxes": torch.zeros(1, 3)}, "bboxes of shape (1, 3)"),
    ("bboxes 2 rows for 1", {"bboxes": torch.full((2, 4), 0.2)}, "bboxes of shape (2, 4)"),
    ("cls fractional", {"cls": torch.tensor([[1.5]])}, "targets.cls holds 1.5"),
    ("cls NaN", {"cls": torch.tensor([[float("nan")]])}, "targets.cls holds nan"),
    ("cls = nc", {"cls": torch.tensor([[3.0]])}, "targets.cls holds 3"),
    ("cls negative", {"cls": torch.tensor([[-1.0]])}, "targets.cls holds -1"),
    ("batch_idx fractional", {"batch_idx": torch.tensor([0.5])}, "targets.batch_idx holds 0.5"),
    ("batch_idx beyond", {"batch_idx": torch.tensor([2.0])}, "targets.batch_idx holds image 2"),
    ("cls text", {"cls": "person"}, "targets.cls"),
    ("bboxes missing", {"bboxes": None}, "targets lacks bboxes"),
]


@pytest.mark.parametrize(("case", "change", "fragment"), TARGET_CASES, ids=[c[0] for c in TARGET_CASES])
def test_bad_bundle_targets(tmp_path, case, change, fragment):
    targets = {
        "batch_idx": torch.tensor([0.0]),
        "cls": torch.tensor([[1.0]]),
        "bboxes": torch.full((1, 4), 0.2),
    }
    targets.update(change)
    targets = {k: v for k, v in targets.items() if v is not None}
    preds = _save(tmp_path / "p.pt", targets=targets)
    refused(["explain", preds], tmp_path, str(preds), fragment)


def test_targets_not_a_dict(tmp_path):
    preds = _save(tmp_path / "p.pt", targets=[1, 2])
    refused(["explain", preds], tmp_path, str(preds), "targets is a list")


# ------------------------------------------------------------------------------ snapshots (structure)


@pytest.fixture
def snap(preds, tmp_path):
    path = tmp_path / "loss.snap.json"
    res = CliRunner().invoke(main, ["snapshot", str(preds), "-o", str(path)])
    assert res.exit_code == 0, res.output
    return path


def _edit(path: Path, change) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return path


SNAPSHOT_EDITS = [
    ("terms emptied", lambda d: d["recipes"][0].update(terms={}), "recipes[0].terms is empty"),
    ("terms a list", lambda d: d["recipes"][0].update(terms=[]), "recipes[0].terms"),
    ("term a string", lambda d: d["recipes"][0]["terms"].update(box="0.5"), "recipes[0].terms.box"),
    ("term NaN", lambda d: d["recipes"][0]["terms"].update(box=float("nan")), "recipes[0].terms.box"),
    ("recipes emptied", lambda d: d.update(recipes=[]), "recipes is empty"),
    ("recipes missing", lambda d: d.pop("recipes"), "recipes is missing"),
    ("recipe not an object", lambda d: d.update(recipes=[3]), "recipes[0] is not an object"),
    ("objective a string", lambda d: d["recipes"][0].update(objective="1"), "recipes[0].objective"),
    ("spec missing", lambda d: d["recipes"][0].pop("spec"), "recipes[0].spec"),
    ("gts a dict", lambda d: d["recipes"][0].update(gts={}), "recipes[0].gts"),
    ("gt positives text", lambda d: d["recipes"][0]["gts"][0].update(positives="1,2"), "gts[0].positives"),
    ("gt index text", lambda d: d["recipes"][0]["gts"][0].update(gt_index="0"), "gts[0].gt_index"),
    ("gt terms missing", lambda d: d["recipes"][0]["gts"][0].pop("terms"), "gts[0].terms"),
    ("gt term a list", lambda d: d["recipes"][0]["gts"][0]["terms"].update(box=[1]), "gts[0].terms.box"),
    ("image index missing", lambda d: d["recipes"][0]["images"][0].pop("index"), "images[0].index"),
    ("schema wrong", lambda d: d.update(schema="yolodbg.snapshot/0"), "schema is 'yolodbg.snapshot/0'"),
    ("inputs missing", lambda d: d.pop("inputs"), "inputs is missing"),
    ("bundle path a number", lambda d: d["inputs"]["bundle"].update(path=3), "inputs.bundle.path"),
    ("gt a string", lambda d: d["inputs"].update(gt="ann.json"), "inputs.gt"),
    ("option imgsz a number", lambda d: d["inputs"].update(options={"imgsz": 640}), "inputs.options.imgsz"),
    ("option unknown", lambda d: d["inputs"].update(options={"zoom": "2"}), "inputs.options.zoom"),
    ("option imgsz nan", lambda d: d["inputs"].update(options={"imgsz": "nan"}), "inputs.options.imgsz"),
    (
        "option strides 0",
        lambda d: d["inputs"].update(options={"strides": "0,16,32"}),
        "inputs.options.strides",
    ),
    ("option nc 0", lambda d: d["inputs"].update(options={"nc": 0}), "inputs.options.nc"),
    (
        "option letterbox unknown",
        lambda d: d["inputs"].update(options={"letterbox": "centred"}),
        "inputs.options.letterbox",
    ),
]


@pytest.mark.parametrize(("case", "change", "fragment"), SNAPSHOT_EDITS, ids=[c[0] for c in SNAPSHOT_EDITS])
def test_hand_edited_snapshots_are_refused(snap, tmp_path, case, change, fragment):
    _edit(snap, change)
    refused(["check", snap], tmp_path, str(snap), fragment)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not a valid snapshot"),  # truncated: the first half of a real one
        (b"", "not a valid snapshot"),
        (b"[1, 2]", "schema is 'list'"),
        (b'{"schema": "yolodbg.snapshot/1", "x": "\xff"}', "not a valid snapshot"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["truncated", "empty", "a list", "not UTF-8", "nested 100k deep"],
)
def test_unreadable_snapshots(snap, tmp_path, content, fragment):
    snap.write_bytes(snap.read_bytes()[: len(snap.read_bytes()) // 2] if content is None else content)
    refused(["check", snap], tmp_path, str(snap), fragment)


def test_a_term_deleted_from_a_snapshot_is_drift(snap, tmp_path):
    """One term removed by hand (the others intact) must not pass: check reports it and exits 1."""
    _edit(snap, lambda d: d["recipes"][0]["terms"].pop("dfl"))
    before = _hashes(tmp_path)
    res = CliRunner().invoke(main, ["check", str(snap)])
    assert res.exit_code == 1 and "term dfl is not in the snapshot" in res.output
    _edit(snap, lambda d: d["recipes"][0]["gts"][0]["terms"].pop("cls"))
    res = CliRunner().invoke(main, ["check", str(snap)])
    assert res.exit_code == 1 and "cls not in the snapshot" in res.output
    assert set(_hashes(tmp_path)) == set(before)


def test_an_intact_snapshot_still_passes(snap):
    res = CliRunner().invoke(main, ["check", str(snap)])
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------- hypothesis: junk numbers in GT files


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    box=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6), st.booleans()
        ),
        min_size=0,
        max_size=6,
    ),
    cat=st.one_of(st.integers(-3, 8), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
)
def test_random_coco_annotations_give_targets_or_one_error(tmp_path_factory, box, cat):
    tmp = tmp_path_factory.mktemp("coco")
    doc = _coco()
    doc["annotations"][0].update(bbox=box, category_id=cat)
    b = bundle.load(_save(tmp / "p.pt"))
    gt = _write_json(tmp / "ann.json", doc)
    try:
        t = groundtruth.from_coco(gt, b, SIZE, nc=3)
    except GroundTruthError as e:
        assert "\n" not in str(e) and str(gt) in str(e)
        return
    assert bool(torch.isfinite(t.bboxes).all()) and all(0 <= int(c) < 3 for c in t.cls)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(alphabet="0123456789.-e naif", max_size=8), st.floats().map(repr)),
        min_size=5,
        max_size=6,
    )
)
def test_random_label_lines_give_targets_or_one_error(tmp_path_factory, fields):
    tmp = tmp_path_factory.mktemp("yolo")
    labels = tmp / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(" ".join(fields) + "\n")
    b = bundle.load(_save(tmp / "p.pt"))
    try:
        t = groundtruth.from_yolo_dir(labels, b, SIZE, nc=3)
    except GroundTruthError as e:
        assert "\n" not in str(e) and "a.txt" in str(e)
        return
    assert bool(torch.isfinite(t.bboxes).all()) and all(0 <= int(c) < 3 for c in t.cls)


# ----------------------------------------------------------------------------- the classes and counts

CLASSES = {
    "option values (explain --imgsz/--strides/--nc/--top)": len(OPTION_CASES),
    "option values (check --rtol/--atol)": len(CHECK_OPTION_CASES),
    "option values (scan/trend/compare/capture)": 7,
    "recipe variant values (every parameter of every recipe)": len(VARIANT_CASES),
    "recipe variant values checked against the bundle / in explain": 8,
    "yolov5 balance values": 4,
    "malformed variant specs (repeated key, missing =)": 4,
    "recipe files (TOML types, non-finite, nesting, encoding)": len(TOML_CASES) + 1,
    "COCO values (bbox, ids, category_id, iscrowd, width/height, categories vs nc)": len(COCO_VALUE_CASES)
    + 7
    + 1,
    "COCO structure (top level, lists, ids, references)": len(COCO_STRUCTURE_CASES),
    "COCO files (truncated, empty, not UTF-8, nested 100k deep)": 5,
    "YOLO label values (non-finite, fractional/negative/too large class, field counts)": len(LABEL_CASES),
    "YOLO label structure (folder for file, not UTF-8, file for folder)": 3,
    "bundle fields (scale, pad, orig_size, input_size, strides, category_ids, images, meta)": len(
        BUNDLE_CASES
    ),
    "bundle targets (non-finite, shapes, classes, batch_idx, types)": len(TARGET_CASES) + 1,
    "snapshots hand-edited (refused, exit 2)": len(SNAPSHOT_EDITS),
    "snapshots unreadable (truncated, empty, list, not UTF-8, nested)": 5,
    "snapshots with a term deleted (drift, exit 1)": 2,
}


def test_every_parameter_of_every_recipe_gets_bad_values():
    """The variant class covers each non-text parameter (and each text one with choices)."""
    covered = {(n, k) for n, k, _ in VARIANT_CASES}
    checked = 0
    for name, cls in RECIPES.items():
        for p in cls.PARAMS:
            if p.type is not str or p.choices:
                assert (name, p.key) in covered, (name, p.key)
                checked += 1
    assert checked, "no parameter of any recipe was checked"
    print("\n".join(f"{n:4d}  {c}" for c, n in CLASSES.items()), f"\n{sum(CLASSES.values()):4d}  total")
