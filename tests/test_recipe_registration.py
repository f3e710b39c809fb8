"""Adding a recipe is one class and one ``@register``: toy recipes defined here, in this file alone,
are known to ``-r``, ``yolodbg recipes``, ``explain``, ``compare`` and ``scan`` (and forgotten again
after the test), with the capabilities they declare. One of them is the worked example of
docs/architecture.md, read from that page, so the page's code keeps working."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import assert_valid

from yolodbg.cli import main
from yolodbg.compare import assigner_keys
from yolodbg.errors import RecipeError
from yolodbg.recipes import get_recipe, register, unregister
from yolodbg.recipes.base import Recipe
from yolodbg.recipes.yolov8 import YoloV8
from yolodbg.scan.run import ScanJob, scan

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
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


# -- capabilities a toy declares ---------------------------------------------------------------------


def _toy_with_capabilities():
    """yolov8's loss with its own capabilities: a reduction text, an extra assignment key, and a
    recall ceiling that calls every GT reachable."""

    class Capable(YoloV8):
        name = "toy-capable"
        reproduces = "v8DetectionLoss, with capabilities of its own (a toy recipe of the test suite)"
        assigner_keys = ("gain.cls",)  # pretend the class gain moves positives
        reduction = "toy: as yolov8"
        recall_ceiling = "toy_all_reachable"

        def reachable(self, result, targets, num_pos):
            return torch.ones(len(targets), dtype=torch.bool)

    return Capable


@pytest.fixture
def capable():
    cls = register(_toy_with_capabilities())
    yield cls
    unregister(cls.name)


def test_the_base_class_gives_every_capability_a_default():
    toy = type("Plain", (Recipe,), {"name": "toy-plain", "PARAMS": (), "heads": ("ultralytics",)})()
    assert toy.assigner_keys == () and toy.reduction == "see yolodbg recipes"
    assert toy.recall_ceiling == "reason_reachable"
    assert get_recipe("yolov8").recall_ceiling == "tal_reachable"  # TAL's own step A
    assert get_recipe("yolox").recall_ceiling == "reason_reachable"


def test_a_toy_recipe_declares_its_capabilities_and_the_commands_read_them(capable):
    recipe = get_recipe("toy-capable:gain.cls=1.0")
    assert assigner_keys(recipe) == {k for k in recipe.params if k.startswith("assigner.")} | {"gain.cls"}
    res = CliRunner().invoke(main, ["compare", *ARGS[:3], "-r", "yolov8", "-r", "toy-capable", "--json", "-"])
    assert res.exit_code == 0, res.output
    why = json.loads(res.stdout)["why"]
    assert why["mean vs sum"][1] == "toy: as yolov8"
    doc = scan(
        [SAMPLE / "yolov8n_val.pt"],
        ScanJob(gt=str(SAMPLE / "coco_val.json"), recipe="toy-capable", evaluate=False),
    )
    ceiling = doc.summary()["recall_ceiling"]
    assert ceiling["hook"] == "toy_all_reachable" and ceiling["value"] == 1.0 and ceiling["num_gt"] > 0


# -- the worked example of docs/architecture.md ------------------------------------------------------


def _docs_example() -> str:
    """The Python block of the worked example under "Adding a recipe" in docs/architecture.md."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page[page.index("### Worked example") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def tal_l1():
    module = types.ModuleType("tal_l1_docs_example")
    exec(compile(_docs_example(), "docs/architecture.md", "exec"), module.__dict__)  # registers tal-l1
    yield module.TalL1
    unregister("tal-l1")


def test_the_worked_example_runs_as_the_docs_say(tal_l1):
    listing = CliRunner().invoke(main, ["recipes", "tal-l1"])
    assert listing.exit_code == 0 and "gain.l1" in listing.stdout and "assigner.topk" in listing.stdout
    res = CliRunner().invoke(main, ["explain", *ARGS, "-r", "tal-l1:gain.l1=0.5"])
    assert res.exit_code == 0, res.output  # exit 1 would be a conservation violation
    doc = json.loads(res.stdout)
    assert_valid(doc, "yolodbg.explain/1")
    assert list(doc["terms"]) == ["box_l1"] and doc["terms"]["box_l1"] > 0
    full = json.loads(CliRunner().invoke(main, ["explain", *ARGS, "-r", "tal-l1"]).stdout)
    assert math.isclose(full["terms"]["box_l1"], 2 * doc["terms"]["box_l1"], rel_tol=1e-9)
    wrong = CliRunner().invoke(
        main,
        ["explain", str(SAMPLE / "yolov5n_val.pt"), "--gt", str(SAMPLE / "coco_val.json"), "-r", "tal-l1"],
    )
    assert wrong.exit_code == 2
    assert "recipe tal-l1 replays Ultralytics' anchor-free head, but" in wrong.output
    assert "holds a yolov5 head; pick a recipe for that head" in wrong.output


def test_the_worked_example_declares_capabilities(tal_l1):
    recipe = get_recipe("tal-l1")
    assert recipe.reduction.startswith("Σ over positives") and recipe.recall_ceiling == "tal_reachable"
    doc = scan(
        [SAMPLE / "yolov8n_val.pt"],
        ScanJob(gt=str(SAMPLE / "coco_val.json"), recipe="tal-l1", evaluate=False),
    )
    assert doc.summary()["recall_ceiling"]["hook"] == "tal_reachable"
