"""The ``yolodbg.trend/1`` document: one row per checkpoint, the series followed over them with
their status, and the GTs that stay orphaned or costly (:func:`yolodbg.scan.trend.trend` scans the
checkpoints). The status of a series (``improving``, ``plateau``, ``diverging``,
``too_short``) follows the rule of :mod:`yolodbg.scan.status`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolodbg.scan.status import status

if TYPE_CHECKING:
    from yolodbg.scan.trend import Checkpoint, GtTracker

SCHEMA = "yolodbg.trend/1"


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
