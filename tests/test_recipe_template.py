"""The recipe base class is the template every shipped recipe follows: it refuses another head
family's bundle with one line, parses a bundle once through its head family's parser (shared by
``input_layout``, ``run`` and ``evaluate``), and the recipe computes its loss in ``replay``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from yolodbg import bundle, heads
from yolodbg.errors import RecipeError
from yolodbg.explain import explain
from yolodbg.heads import registry
from yolodbg.recipes import RECIPES, get_recipe

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
GT = str(SAMPLE / "coco_val.json")
BUNDLE_OF = {  # a sample bundle each recipe replays
    "yolov8": "yolov8n_val.pt",
    "yolo26": "yolo26n_val.pt",
    "yolox": "yolox_val.pt",
    "yolox-main": "yolox_val.pt",
    "yolov1": "yolov1_val.pt",
    "yolov5": "yolov5n_val.pt",
}
HEAD_FILES = {
    "ultralytics": "yolov8n_val.pt",
    "yolox": "yolox_val.pt",
    "yolov1": "yolov1_val.pt",
    "yolov5": "yolov5n_val.pt",
}


def test_every_shipped_recipe_has_a_sample_bundle():
    assert set(BUNDLE_OF) == set(RECIPES)


@pytest.mark.parametrize("name", list(BUNDLE_OF))
def test_a_bundle_of_another_head_is_refused_in_one_line(name):
    recipe = get_recipe(name)
    other = next(f for h, f in HEAD_FILES.items() if h not in recipe.heads)
    b = bundle.load(SAMPLE / other)
    with pytest.raises(RecipeError) as e:
        recipe.input_layout(b)
    msg = str(e.value)
    assert msg.startswith(f"recipe {name} replays ") and f"holds a {b.head} head; pick a recipe" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("name", list(BUNDLE_OF))
def test_a_bundle_is_parsed_once_through_its_head_family(name, monkeypatch):
    b = bundle.load(SAMPLE / BUNDLE_OF[name])
    family = heads.family(b.head)
    calls = []

    def counting(x):
        calls.append(x)
        return family.parse(x)

    monkeypatch.setitem(registry._FAMILIES, b.head, dataclasses.replace(family, parse=counting))
    recipe = get_recipe(name)
    ex = explain(b, GT, recipe, top=0)
    assert recipe.parse(b) is recipe.parse(b)  # what evaluate reads: the same parsed output
    assert calls == [b]
    assert ex.result.recipe == name and set(ex.result.terms) <= set(ex.result.ledger)
    if not any(c in t for t in recipe.terms for c in "|*"):  # the class declares what the replay logs
        assert tuple(ex.result.terms) == recipe.terms
