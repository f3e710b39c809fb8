"""Loss-number snapshots inside a pytest suite.

>>> from yolodbg.testing import assert_loss_snapshot                        # doctest: +SKIP
>>> def test_loss_numbers_are_stable():
...     assert_loss_snapshot("tests/data/batch.pt", "tests/data/ann.json", "yolov8",
...                          "tests/snapshots/batch.yolov8.json")

The first run (or any run with ``pytest --update-loss-snapshots``, or with the environment
variable ``YOLODBG_UPDATE_SNAPSHOTS=1``) writes the snapshot; later runs recompute and fail
with a readable diff when a term, a GT's terms or its positive anchors drift.
"""

from __future__ import annotations

import os
from pathlib import Path

from yolodbg import bundle as bundle_mod
from yolodbg import snapshot as snap
from yolodbg.atomic import atomic_write
from yolodbg.recipes import get_recipe
from yolodbg.recipes.base import Recipe

ENV = "YOLODBG_UPDATE_SNAPSHOTS"


def update_requested() -> bool:
    """``pytest --update-loss-snapshots`` was given, or ``YOLODBG_UPDATE_SNAPSHOTS`` is set to 1/true/yes."""
    from yolodbg import pytest_plugin

    return pytest_plugin.update_requested or os.environ.get(ENV, "").lower() in ("1", "true", "yes")


def assert_loss_snapshot(
    preds: str | os.PathLike | bundle_mod.Bundle,
    gt: str | os.PathLike | None,
    recipe: str | Recipe | list[str | Recipe],
    path: str | os.PathLike,
    *,
    update: bool | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Compare ``recipe`` on ``preds``/``gt`` with the snapshot at ``path`` (write it when missing or updating).

    Raises ``AssertionError`` listing every drift (terms, per-GT terms, positives, parameters).
    """
    b = preds if isinstance(preds, bundle_mod.Bundle) else bundle_mod.load(preds)
    specs = recipe if isinstance(recipe, list) else [recipe]
    recipes = [get_recipe(r) if isinstance(r, str) else r for r in specs]
    path = Path(path)
    doc = snap.make(b, gt, recipes, {}, base=path.parent)  # paths relative to the file: check runs anywhere
    if update is None:
        update = update_requested()
    if update or not path.exists():
        text = snap.dumps(doc)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return
    drift = snap.diff(snap.load(path), doc, rtol, atol)
    if drift.drifted:
        lines = "\n  ".join(drift.lines()[:100])
        raise AssertionError(
            f"loss numbers drifted from {path} (rtol {rtol:g}, atol {atol:g}):\n  {lines}\n"
            f"If the change is intended, rerun with --update-loss-snapshots or {ENV}=1."
        )
