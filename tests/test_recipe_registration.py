"""Adding a recipe is one class and one ``@register``: a toy recipe defined here, in this file alone,
is known to ``-r``, ``yolodbg recipes`` and ``explain`` (and forgotten again after the test)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import assert_valid

from yolodbg.cli import main
from yolodbg.errors import RecipeError
from yolodbg.recipes import get_recipe, register, unregister
from yolodbg.recipes.yolov8 import YoloV8

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
ARGS = [str(SAMPLE / "yolov8n_val.pt"), "--gt", str(SAMPLE / "coco_val.json"), "--json", "-"]


def _toy_class():
    """Ultralytics' loss with the class gain at a quarter instead of a half (a team's own default)."""

    class QuarterCls(YoloV8):
        name = "toy-quarter-cls"
        reproduces = "v8DetectionLoss with gain.cls 0.25 (a toy recipe of the test suite)"
        PARAMS = tuple(
            dataclasses.replace(p, default=0.25) if p.key == "gain.cls" else p for p in YoloV8.PARAMS
        )

    return QuarterCls


@pytest.fixture
def toy():
    cls = register(_toy_class(), aliases=("toy-qc",))
    yield cls
    unregister(cls.name)


def _terms(*extra: str) -> dict:
    res = CliRunner().invoke(main, ["explain", *ARGS, *extra])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert_valid(doc, "yolodbg.explain/1")
    return doc["terms"]


def test_one_registration_makes_a_recipe_known_everywhere(toy):
    assert get_recipe("toy-qc").name == toy.name
    assert get_recipe("toy-quarter-cls:assigner.topk=13").params["assigner.topk"] == 13
    listing = CliRunner().invoke(main, ["recipes"])
    assert listing.exit_code == 0 and "toy-quarter-cls" in listing.stdout
    ours, base = _terms("-r", "toy-quarter-cls"), _terms("-r", "yolov8")
    assert math.isclose(ours["cls"], base["cls"] / 2, rel_tol=1e-6)  # the cls gain halved, nothing else
    assert ours["box"] == base["box"] and ours["dfl"] == base["dfl"]


def test_an_unregistered_recipe_is_unknown_again():
    cls = register(_toy_class())
    unregister(cls.name)
    with pytest.raises(RecipeError, match="unknown recipe 'toy-quarter-cls'"):
        get_recipe("toy-quarter-cls")


def test_a_name_is_registered_once(toy):
    with pytest.raises(ValueError, match="registered already"):
        register(_toy_class())
    with pytest.raises(ValueError, match="registered already"):
        register(type("Other", (YoloV8,), {"name": "toy-other"}), aliases=("yolo11",))  # yolov8's alias
    assert get_recipe("yolo11").name == "yolov8"


def test_with_params_makes_a_variant():
    base = get_recipe("yolov8:assigner.topk=13")
    variant = base.with_params({"box": "giou"})
    assert variant.spec() == "yolov8:box=giou,assigner.topk=13" and base.spec() == "yolov8:assigner.topk=13"
