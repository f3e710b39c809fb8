"""The recipe registry: names, aliases, and ``-r`` parsing.

Importing the package registers the shipped recipes without importing torch: a recipe module
holds the class (parameters, capabilities), and the module that computes its loss
(``<name>_replay``) is imported when the recipe runs. So ``yolodbg recipes`` and the checks of
``-r`` variants answer at once.

>>> from yolodbg.recipes import get_recipe
>>> get_recipe("yolo11:assigner.topk=13").spec()
'yolov8:assigner.topk=13'
"""

from __future__ import annotations

import difflib

from yolodbg.errors import RecipeError
from yolodbg.recipes import toml_file
from yolodbg.recipes.base import ALIASES, RECIPES, Param, Recipe, parse_spec, register, unregister

# isort: off
# Importing a recipe module registers its recipes (@register); this order is `yolodbg recipes`' order.
from yolodbg.recipes import yolov8, yolo26, yolox, yolov1, yolov5  # noqa: F401
# isort: on

__all__ = [
    "ALIASES",
    "RECIPES",
    "Param",
    "Recipe",
    "get_recipe",
    "list_recipes",
    "recipe_for_head",
    "register",
    "unregister",
]


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
    from yolodbg import heads  # the catalogue itself does not need the head families

    family = heads.get(head)
    if family is None:
        raise RecipeError(
            f"no recipe for head {head!r} in this version of yolodbg (available: "
            f"{', '.join(sorted(heads.names()))}); see `yolodbg recipes`"
        )
    return get_recipe(family.recipe_name(outputs))
