"""A recipe from a TOML file, for teams with their own loss settings: ``-r my_loss.toml``.

::

    # my_loss.toml
    recipe = "yolov8"            # a recipe name, or a full variant such as "yolov8:box=giou"
    label = "ours-v3"            # optional: the name shown in reports (default: the file stem)

    [params]                     # any key of `yolodbg recipes yolov8`
    cls = "varifocal"
    "cls.gamma" = 1.5            # quote dotted keys when their first part is also a key (cls)
    gain.cls = 1.0               # or write them bare: this is the table gain = {cls = 1.0}

Values in ``[params]`` override the ones in ``recipe``; they go through the same checks as
``-r name:key=value`` (a TOML ``13.5`` for an integer key is an error, not 13).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolodbg.errors import RecipeError
from yolodbg.recipes.base import Recipe

TOP_KEYS = ("recipe", "label", "params")


def is_recipe_file(spec: str) -> bool:
    """Whether a ``-r`` value names a TOML file rather than ``name[:k=v,...]``."""
    return spec.strip().lower().endswith(".toml")


def _flatten(table: dict[str, Any], path: str, prefix: str = "") -> dict[str, Any]:
    """``{"gain": {"cls": 1.0}}`` -> ``{"gain.cls": 1.0}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path, full + "."))
        elif isinstance(value, (str, int, float, bool)):
            out[full] = value
        else:
            raise RecipeError(
                f"{path}: params.{full} is a {type(value).__name__}; expected a string, number or boolean"
            )
    return out


def _as_text(value: Any) -> str:
    """TOML scalars as the text ``-r`` would carry, so both paths share one parser (13.0 is no int)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read(path: str | Path) -> tuple[str, dict[str, Any], str]:
    """``(recipe spec, params as TOML values, label)`` of a recipe file."""
    from yolodbg.paths import RECIPE_FILE_LIMIT, regular_file

    fix = "-r takes NAME[:key=value,...] or an existing .toml file"
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise RecipeError(f"{p}: no such recipe file; {fix}")
    regular_file(p, "the recipe file", fix, RecipeError, RECIPE_FILE_LIMIT)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{p}: not valid TOML ({e}); fix the file (it must be UTF-8 TOML)") from None
    except RecursionError:
        raise RecipeError(f"{p}: not valid TOML (nested too deeply); a recipe file is a flat table") from None
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise RecipeError(
            f"{p}: unknown top-level key(s) {', '.join(unknown)}; expected {', '.join(TOP_KEYS)} "
            "(recipe parameters go under [params])"
        )
    spec = doc.get("recipe")
    if not isinstance(spec, str) or not spec.strip():
        raise RecipeError(f'{p}: missing recipe = "NAME" (e.g. recipe = "yolov8"; see yolodbg recipes)')
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise RecipeError(f"{p}: params must be a table ([params]), got a {type(params).__name__}")
    label = doc.get("label", p.stem)
    if not isinstance(label, str):
        raise RecipeError(f"{p}: label must be a string")
    try:
        flat = _flatten(params, str(p))
    except RecursionError:
        raise RecipeError(
            f"{p}: [params] is nested too deeply; write flat keys such as gain.cls = 1.0"
        ) from None
    return spec, flat, label


def load(path: str | Path, get_recipe: Callable[[str], Recipe]) -> Recipe:
    """Build the recipe a TOML file describes (``get_recipe`` builds the named base recipe)."""
    spec, params, label = read(path)
    if is_recipe_file(spec):
        raise RecipeError(f"{path}: recipe = {spec!r} names another file; give a recipe name")
    try:
        base = get_recipe(spec)
        specs = {p.key: p for p in base.PARAMS}
        for key, value in params.items():
            if key in specs:  # unknown keys: the recipe names them with the valid ones
                specs[key].check_toml_type(value)
        texts = {k: _as_text(v) for k, v in params.items()}
        return base.with_params(texts, label=label)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
