"""The recipe registry: names, aliases, and ``-r`` parsing.

>>> from yolodbg.recipes import get_recipe
>>> get_recipe("yolo11:assigner.topk=13").spec()
'yolov8:assigner.topk=13'
"""

from __future__ import annotations

import difflib

from yolodbg import heads
from yolodbg.errors import RecipeError
from yolodbg.recipes import toml_file
from yolodbg.recipes.base import Param, Recipe, parse_spec
from yolodbg.recipes.yolo26 import Yolo26
from yolodbg.recipes.yolov1 import YoloV1
from yolodbg.recipes.yolov5 import YoloV5
from yolodbg.recipes.yolov8 import YoloV8
from yolodbg.recipes.yolox import YoloX, YoloXMain

RECIPES: dict[str, type[Recipe]] = {
    cls.name: cls for cls in (YoloV8, Yolo26, YoloX, YoloXMain, YoloV1, YoloV5)
}
ALIASES: dict[str, str] = {"yolo11": "yolov8", "v8": "yolov8"}

__all__ = ["ALIASES", "RECIPES", "Param", "Recipe", "get_recipe", "list_recipes", "recipe_for_head"]


def list_recipes() -> list[str]:
    """Recipe names, then aliases."""
    return [*RECIPES, *ALIASES]


def get_recipe(spec: str) -> Recipe:
    """Build a recipe from ``name[:key=value,...]`` or from a ``.toml`` recipe file."""
    if toml_file.is_recipe_file(spec):
        return toml_file.load(spec, get_recipe)
    name, params = parse_spec(spec)
    key = ALIASES.get(name, name)
    if key not in RECIPES:
        close = difflib.get_close_matches(name, list_recipes(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise RecipeError(f"unknown recipe {name!r}; {hint}known recipes: {', '.join(list_recipes())}")
    return RECIPES[key](params, label=spec)


def recipe_for_head(head: str, outputs: object = None) -> Recipe:
    """The default recipe the head family declares (``yolo26`` for end-to-end Ultralytics outputs)."""
    family = heads.get(head)
    if family is None:
        raise RecipeError(
            f"no recipe for head {head!r} in this version of yolodbg (available: "
            f"{', '.join(sorted(heads.names()))}); see `yolodbg recipes`"
        )
    return get_recipe(family.recipe_name(outputs))
