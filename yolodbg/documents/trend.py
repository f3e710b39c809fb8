"""The ``yolodbg.trend/1`` document: one row per checkpoint, the series followed over them with
their status, and the GTs that stay orphaned or costly (:func:`yolodbg.scan.trend.trend` scans the
checkpoints). A series (a term, the total, a class's loss per GT, AP) is:

- ``diverging`` when its last value is not finite, or is worse than its best by more than
  ``DIVERGE_REL`` (relative; ``DIVERGE_AP`` absolute for AP) and worse than one step or
  ``window`` steps before;
- ``plateau`` when it improved by less than ``PLATEAU_REL`` (relative; ``PLATEAU_AP`` absolute
  for AP) over the last ``window`` steps;
- ``improving`` otherwise, and ``too_short`` with fewer than ``window + 1`` checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodbg.scan.trend import Checkpoint, GtTracker

SCHEMA = "yolodbg.trend/1"
PLATEAU_REL = 0.01
PLATEAU_AP = 0.005
DIVERGE_REL = 0.10
DIVERGE_AP = 0.01
WINDOW = 3


def status(values: Sequence[float | None], higher_is_better: bool = False, window: int = WINDOW) -> str:
    """``improving``, ``plateau``, ``diverging`` or ``too_short`` (see the module docstring).

    >>> status([4.0, 3.0, 2.0, 1.0]), status([4.0, 2.0, 2.0, 2.0, 2.0]), status([3.0, 1.0, 1.5])
    ('improving', 'plateau', 'diverging')
    """
    given = [x for x in values if x is not None]
    if given and not math.isfinite(given[-1]):
        return "diverging"  # the last checkpoint's value is inf or NaN
    v = [x for x in given if math.isfinite(x)]
    if len(v) < 2:
        return "too_short"
    sign = -1.0 if higher_is_better else 1.0
    loss = [sign * x for x in v]  # lower is better from here on
    best = min(loss)
    start = loss[max(0, len(loss) - window - 1)]
    worse = loss[-1] > loss[-2] or loss[-1] > start
    tol = DIVERGE_AP if higher_is_better else DIVERGE_REL * max(abs(best), 1e-12)
    if worse and loss[-1] - best > tol:
        return "diverging"
    if len(v) < window + 1:
        return "too_short"
    gain = start - loss[-1]
    tol = PLATEAU_AP if higher_is_better else PLATEAU_REL * max(abs(start), 1e-12)
    return "plateau" if gain < tol else "improving"


def checkpoint_row(c: Checkpoint, d: dict) -> dict[str, Any]:
    """One checkpoint's row: its terms, total, mAP, orphan rate, recall ceiling and per-class numbers."""
    coco = d.get("coco") or {}
    return {
        "label": c.label,
        "epoch": c.epoch,
        "bundles": d["bundles"],
        "images": d["images"],
        "terms": d["terms"],
        "total": d["total"] if d["bundles"] else None,
        "AP": coco.get("AP"),
        "AP50": coco.get("AP50"),
        "orphan_rate": d["orphans"]["rate"],
        "ceiling": d["recall_ceiling"]["value"],
        "classes": {
            str(r["class"]): {"loss_per_gt": r["loss_per_gt"], "AP": r["AP"], "num_gt": r["num_gt"]}
            for r in d["classes"]
        },
        "failed": d["failed"],
    }


def _series(rows: list[dict[str, Any]], names: list[str], window: int) -> dict[str, dict[str, Any]]:
    """Each followed value over the checkpoints with its status: terms and total (lower is better),
    AP and AP50 (higher), and per class its loss per GT and AP; mAP series only when evaluated."""
    series: dict[str, dict[str, Any]] = {}
    for name in [*names, "total"]:
        vals = [r["terms"].get(name) if name != "total" else r["total"] for r in rows]
        series[name] = {"values": vals, "status": status(vals, False, window)}
    for name in ("AP", "AP50"):
        vals = [r[name] for r in rows]
        if any(v is not None for v in vals):
            series[name] = {"values": vals, "status": status(vals, True, window)}
    classes = sorted({c for r in rows for c in r["classes"]}, key=int)
    for c in classes:
        vals = [r["classes"].get(c, {}).get("loss_per_gt") for r in rows]
        series[f"class {c} loss/GT"] = {"values": vals, "status": status(vals, False, window)}
        aps = [r["classes"].get(c, {}).get("AP") for r in rows]
        if any(v is not None for v in aps):
            series[f"class {c} AP"] = {"values": aps, "status": status(aps, True, window)}
    return series


def trend_doc(
    cps: list[Checkpoint],
    docs: list[dict],
    tracker: GtTracker,
    seen: list[int],
    window: int,
    interrupted: bool,
) -> dict[str, Any]:
    """Series, statuses and GT lists from the per-checkpoint scan documents."""
    names = list(next((d["terms"] for d in docs if d["bundles"]), {}))
    rows = [checkpoint_row(c, d) for c, d in zip(cps, docs, strict=True)]
    series = _series(rows, names, window)
    flags = [f"{k}: {v['status']}" for k, v in series.items() if v["status"] in ("plateau", "diverging")]
    orphaned = tracker.always_orphaned(seen) if seen else []
    high = tracker.always_high_loss(seen) if seen else []
    if orphaned:
        flags.append(f"{len(orphaned)} GTs never got a positive anchor at any checkpoint")
    return {
        "schema": SCHEMA,
        "interrupted": interrupted,
        "window": window,
        "checkpoints": rows,
        "terms": {n: [r["terms"].get(n) for r in rows] for n in names},
        "series": series,
        "always_orphaned": orphaned,
        "always_high_loss": high,
        "flags": flags,
    }
