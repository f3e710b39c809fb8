"""``yolodbg recipes``: the recipes, their parameters and defaults, and what each reproduces."""

from __future__ import annotations

import click

from yolodbg.cli.options import debug_option, wide_option


@click.command()
@click.argument("name", required=False)
@wide_option
@debug_option
def recipes(name, wide):
    """List recipes, their parameters and defaults, and what each reproduces.

    \b
    Examples:
      yolodbg recipes
      yolodbg recipes yolov8
    Variants are written NAME:key=value,key=value, e.g. yolov8:assigner.topk=13,gain.cls=1.0
    """
    from yolodbg.recipes import ALIASES, RECIPES, get_recipe
    from yolodbg.render import fit
    from yolodbg.render import recipes as render

    console = fit.console(wide)
    if name is None:
        rows = [
            (
                key,
                ", ".join(a for a, k in ALIASES.items() if k == key),
                ", ".join(cls.heads),
                ", ".join(cls.terms),
                cls.reproduces,
            )
            for key, cls in RECIPES.items()
        ]
        console.print(render.recipe_list(rows, console.width, wide))
        return
    recipe = get_recipe(name)
    rows = [("auto" if p.default is None else str(p.default), p) for p in recipe.PARAMS]
    params = [(p.key, default, p.describe()) for default, p in rows]
    console.print(render.recipe_params(recipe.name, recipe.reproduces, params, console.width, wide))
