"""``yolodbg compare``: loss variants on one batch, or one loss on two checkpoints of the same images."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from yolodbg.cli.options import (
    EXIT_CHECK,
    bundle_options,
    debug_option,
    gt_option,
    json_option,
    names_option,
    recipe_option,
    say_wrote,
    top_option,
    wide_option,
)


@click.command()
@click.argument("preds", nargs=-1, required=True, type=click.Path(path_type=Path))
@gt_option("COCO json or YOLO labels folder (default: each bundle's own targets).")
@recipe_option(
    "A loss to compare (repeat: the first is the baseline). With two bundles: at most one.",
    multiple=True,
    metavar="NAME[:k=v,..]|FILE.toml",
)
@top_option("Rows of the GT tables.")
@names_option
@json_option("the yolodbg.compare/1 JSON")
@wide_option
@bundle_options
@debug_option
def compare(preds, gt, recipe_specs, top, names_file, json_out, wide, bundle_spec):
    """Compare loss variants on one batch, or one loss on two bundles of the same images.

    \b
    PREDS -r A -r B [-r C ...]   every recipe on the same batch and ground truth
    A.pt B.pt [-r R]              two checkpoints (or two steps) of the same images

    Shows each term side by side with absolute and relative deltas, which GTs gained or
    lost positive anchors (or became orphans), the GTs whose contribution changed most,
    the gain that keeps a term's size when a variant swaps its function (CIoU → SIoU,
    BCE → varifocal), and, across recipes, the normaliser, gains and reductions behind
    the numbers. Variants that change only the loss keep the assignment fixed.

    \b
    Examples:
      yolodbg compare sample_data/yolov8n_val.pt --gt sample_data/coco_val.json \\
          -r yolov8 -r yolov8:box=giou -r yolov8:cls=varifocal,assigner.topk=13
      yolodbg compare preds.pt -r yolov8 -r my_loss.toml --json cmp.json
      yolodbg compare epoch10.pt epoch50.pt --gt ann.json
    """
    from yolodbg.documents.compare import compare_doc
    from yolodbg.paths import check_outputs
    from yolodbg.render import compare as render
    from yolodbg.render import fit, jsonout

    check_outputs(("--json", json_out), inputs=(*preds, gt))
    cmp = _comparison(preds, gt, recipe_specs, bundle_spec, names_file)
    if json_out:
        jsonout.write(compare_doc(cmp), json_out)
        say_wrote(json_out)
    if json_out != "-":
        render.render_compare(fit.console(wide), cmp, top, wide)
    _exit_on_violations(cmp)


def _comparison(preds, gt, recipe_specs, bundle_spec, names_file):
    """Two bundles under one recipe, or one bundle under several recipes (anything else: usage error)."""
    from yolodbg.class_names import load_names_file
    from yolodbg.compare import compare_bundles, compare_recipes
    from yolodbg.errors import InputError
    from yolodbg.recipes import get_recipe, recipe_for_head

    if len(preds) > 2:
        raise InputError(
            f"compare takes one bundle with several -r recipes, or two bundles; got {len(preds)} bundles"
        )
    if names_file is not None:
        load_names_file(names_file)  # a bad --names fails before any replay, named as itself
    recipes = [get_recipe(s) for s in recipe_specs]
    bundles = [bundle_spec.load(p) for p in preds]
    if len(bundles) == 2:
        if len(recipes) > 1:
            raise InputError(
                f"two bundles are compared under one recipe; got {len(recipes)} (-r); drop all but one"
            )
        recipe = recipes[0] if recipes else recipe_for_head(bundles[0].head, bundles[0].outputs)
        return compare_bundles(bundles[0], bundles[1], recipe, gt, names_file)
    if len(recipes) < 2:
        raise InputError(
            "compare needs two or more recipes for one bundle (e.g. -r yolov8 -r yolov8:box=giou), "
            "or two bundles (A.pt B.pt)"
        )
    return compare_recipes(bundles[0], recipes, gt, names_file)


def _exit_on_violations(cmp) -> None:
    """A conservation violation is a yolodbg bug: say so on stderr and exit 1."""
    from rich.console import Console

    if not cmp.violations:
        return
    err = Console(stderr=True)
    for v in cmp.violations:
        err.print(f"[bold red]conservation violated:[/] {v} (a yolodbg bug; please report)", highlight=False)
    sys.exit(EXIT_CHECK)
