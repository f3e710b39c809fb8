"""The ``yolodbg.snapshot/1`` document: a recipe's numbers on a bundle, deterministic to the byte.

Floats are written with 9 significant digits (enough to round-trip float32), parameters and
positives sorted; :mod:`yolodbg.snapshot` makes, reads and diffs these documents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yolodbg import __version__

if TYPE_CHECKING:
    from yolodbg.bundle import Bundle
    from yolodbg.explain import Explanation

SCHEMA = "yolodbg.snapshot/1"


def _num(x: float) -> float | None:
    return float(f"{x:.9g}") if math.isfinite(x) else None


def _terms(d: dict[str, float]) -> dict[str, float | None]:
    return {k: _num(v) for k, v in d.items()}


def recipe_record(ex: Explanation) -> dict[str, Any]:
    """The numbers of one recipe on one bundle, in snapshot form."""
    bd, res = ex.breakdown, ex.breakdown.result
    return {
        "spec": ex.recipe.spec(),
        "name": ex.recipe.name,
        "params": dict(sorted(res.params.items())),
        "objective": _num(res.objective),
        "terms": _terms(res.terms),
        "extra_terms": _terms(res.extra_terms),
        "images": [
            {"index": im.index, "image_id": im.image_id, "terms": _terms(im.terms)} for im in bd.images
        ],
        "gts": [
            {
                "image_index": g.image_index,
                "gt_index": g.gt_index,
                "ann_id": g.ann_id,
                "class": g.cls,
                "num_pos": g.num_pos,
                "positives": sorted(p["anchor"] for p in g.positives),
                "terms": _terms(g.terms),
            }
            for g in bd.gts
        ],
    }


@dataclass(frozen=True)
class RecordedPaths:
    """The input paths as a snapshot records them (relative to the snapshot file when
    ``relative_to_snapshot``, else as given)."""

    bundle: str
    gt: str | None
    relative_to_snapshot: bool = False


def snapshot_doc(
    bundle: Bundle,
    paths: RecordedPaths,
    gt_sha256: str | None,
    explanations: list[Explanation],
    options: dict[str, Any],
) -> dict[str, Any]:
    """The snapshot of ``explanations`` (one per recipe) of ``bundle`` against the GT at ``paths.gt``
    (digest ``gt_sha256``)."""
    import torch

    records = [recipe_record(ex) for ex in explanations]
    inputs: dict[str, Any] = {
        "bundle": {"path": paths.bundle, "sha256": bundle.digest},
        "gt": None if paths.gt is None else {"path": paths.gt, "sha256": gt_sha256},
        "options": {k: v for k, v in sorted(options.items()) if v is not None},
    }
    if paths.relative_to_snapshot:
        inputs["paths_relative_to"] = "snapshot"
    letterbox = explanations[0].targets.letterbox_doc() if explanations else None
    if letterbox is not None:  # which loader's letterbox mapped the GT of images without scale/pad
        inputs["letterbox"] = letterbox
    return {
        "schema": SCHEMA,
        "created_with": {"yolodbg": __version__, "torch": torch.__version__.split("+")[0]},
        "inputs": inputs,
        "recipes": records,
    }
