"""The ``explain`` job as a library call: bundle + ground truth + recipe -> report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yolodbg import breakdown as breakdown_mod
from yolodbg import groundtruth
from yolodbg.breakdown import Breakdown
from yolodbg.bundle import Bundle
from yolodbg.class_names import ClassNames, load_names_file
from yolodbg.class_names import resolve as resolve_names
from yolodbg.groundtruth import Targets
from yolodbg.logged import LoggedComparison
from yolodbg.logged import compare as compare_logged
from yolodbg.nonfinite import NonFinite, locate
from yolodbg.recipes import recipe_for_head
from yolodbg.recipes.base import Recipe


@dataclass
class Explanation:
    bundle: Bundle
    recipe: Recipe
    targets: Targets
    breakdown: Breakdown
    nonfinite: NonFinite | None
    logged: LoggedComparison | None = None  # the trainer's logged loss_items beside the replay
    class_names: ClassNames = field(default_factory=ClassNames)  # how every report writes a class

    @property
    def result(self):
        return self.breakdown.result


def explain(
    bundle: Bundle,
    gt: str | Path | None = None,
    recipe: Recipe | None = None,
    top: int = 10,
    positives: bool = True,
    *,
    focus: int | None = None,
    names_file: str | Path | None = None,
) -> Explanation:
    """Replay ``recipe`` (default: the head's recipe) on a bundle and break the loss down.

    ``positives=False``: GT rows without their per-anchor positive list (see :func:`breakdown.build`).
    ``focus``: rank the top background anchors within that batch element (``--image``).
    ``names_file``: class names (``--names``) instead of the COCO categories or the bundle's.
    """
    if names_file is not None:
        load_names_file(names_file)  # a bad --names fails before the replay, not after it
    recipe = recipe or recipe_for_head(bundle.head, bundle.outputs)
    input_size, nc = recipe.input_layout(bundle)
    targets = groundtruth.load_targets(gt, bundle, input_size, nc)
    result = recipe.run(bundle, targets)
    bd = breakdown_mod.build(result, targets, bundle.images, top=top, positives=positives, focus=focus)
    logged = compare_logged(bundle.meta, result.terms, recipe, bundle.source)
    names = resolve_names(
        names_file=names_file,
        gt=gt,
        category_ids=targets.category_ids or bundle.category_ids,
        meta=bundle.meta,
    )
    return Explanation(bundle, recipe, targets, bd, locate(result, targets), logged, names)
