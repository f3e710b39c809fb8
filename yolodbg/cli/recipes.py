"""``yolodbg recipes``: the recipes, their parameters and defaults, and what each reproduces."""

from __future__ import annotations

import click

from yolodbg.cli.options import debug_option


@click.command()
@click.argument("name", required=False)
@debug_option
def recipes(name):
    """List recipes, their parameters and defaults, and what each reproduces.

    \b
    Examples:
      yolodbg recipes
      yolodbg recipes yolov8
    Variants are written NAME:key=value,key=value, e.g. yolov8:assigner.topk=13,gain.cls=1.0
    """
    from rich.console import Console
    from rich.table import Table

    from yolodbg.recipes import ALIASES, RECIPES, get_recipe

    console = Console()
    if name is None:
        table = Table(show_edge=False, header_style="bold")
        table.add_column("recipe", no_wrap=True)
        table.add_column("aliases", no_wrap=True)
        table.add_column("head")
        table.add_column("terms")
        table.add_column("reproduces")
        for key, cls in RECIPES.items():
            aliases = ", ".join(a for a, k in ALIASES.items() if k == key)
            table.add_row(key, aliases, ", ".join(cls.heads), ", ".join(cls.terms), cls.reproduces)
        console.print(table)
        console.print("Parameters of one recipe: yolodbg recipes NAME")
        return
    recipe = get_recipe(name)
    console.print(f"[bold]{recipe.name}[/] — {recipe.reproduces}")
    table = Table(show_edge=False, header_style="bold")
    table.add_column("key", no_wrap=True)
    table.add_column("default", no_wrap=True)
    table.add_column("meaning")
    for p in recipe.PARAMS:
        default = "auto" if p.default is None else str(p.default)
        table.add_row(p.key, default, p.describe())
    console.print(table)
