"""``yolodbg trend``: the same images at several checkpoints -> trajectories of loss, mAP and GTs.

Checkpoints (in this order of precedence):

1. ``meta["epoch"]`` of the bundles, when every bundle has one: bundles of the same epoch
   form one checkpoint, in ascending epoch;
2. otherwise, with several RUN_DIR arguments: each argument (a folder of bundles, or a file)
   is one checkpoint, in argument order;
3. otherwise each bundle file is one checkpoint, in natural file order.

Every checkpoint is scanned like ``yolodbg scan`` (one :class:`ScanAggregate` each); GTs are
followed across checkpoints by (image, annotation id — or index in the image). A series
(a term, the total, a class's loss per GT, AP) is:

- ``diverging`` when its last value is not finite, or is worse than its best by more than
  ``DIVERGE_REL`` (relative; ``DIVERGE_AP`` absolute for AP) and worse than one step or
  ``window`` steps before;
- ``plateau`` when it improved by less than ``PLATEAU_REL`` (relative; ``PLATEAU_AP`` absolute
  for AP) over the last ``window`` steps;
- ``improving`` otherwise, and ``too_short`` with fewer than ``window + 1`` checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolodbg.errors import InputError
from yolodbg.scan.aggregate import ModelGuard, ScanAggregate
from yolodbg.scan.records import GtRecord
from yolodbg.scan.run import Failed, ScanJob, drive, expand

if TYPE_CHECKING:
    from yolodbg.scan.ray_pool import RayPool

SCHEMA = "yolodbg.trend/1"
PLATEAU_REL = 0.01
PLATEAU_AP = 0.005
DIVERGE_REL = 0.10
DIVERGE_AP = 0.01
WINDOW = 3
HIGH_LOSS_QUANTILE = 0.9


@dataclass(frozen=True)
class Checkpoint:
    label: str
    epoch: float | None
    paths: tuple[Path, ...]


def read_epoch(path: Path) -> float | None:
    """``meta["epoch"]`` of a bundle file, read without loading its tensors (``mmap``)."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable here: the scan reports it properly
        return None
    meta = data.get("meta") if isinstance(data, dict) else None
    value = meta.get("epoch") if isinstance(meta, dict) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def checkpoints(specs: Sequence[str | os.PathLike]) -> list[Checkpoint]:
    """Group bundle files into checkpoints (see the module docstring for the rules)."""
    groups = [expand(s) for s in specs]
    files = [f for g in groups for f in g]
    epochs = [read_epoch(f) for f in files]
    if files and all(e is not None for e in epochs):
        by_epoch: dict[float, list[Path]] = {}
        for f, e in zip(files, epochs, strict=True):
            by_epoch.setdefault(e, []).append(f)
        return [Checkpoint(f"epoch {e:g}", e, tuple(fs)) for e, fs in sorted(by_epoch.items())]
    if len(groups) > 1:
        return [Checkpoint(str(s), None, tuple(g)) for s, g in zip(specs, groups, strict=True)]
    return [Checkpoint(f.name, None, (f,)) for f in files]


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


def _gt_key(g: GtRecord) -> tuple:
    return (g.image, g.ann_id if g.ann_id is not None else f"#{g.gt_index}")


class GtTracker:
    """Each GT's positives and loss at every checkpoint (memory: GTs × checkpoints)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.gts: dict[tuple, dict[str, Any]] = {}

    def add(self, ci: int, g: GtRecord) -> None:
        d = self.gts.setdefault(
            _gt_key(g),
            {
                "image": g.image,
                "ann_id": g.ann_id,
                "gt_index": g.gt_index,
                "class": g.cls,
                "category_id": g.category_id,
                "bucket": g.bucket,
                "num_pos": [None] * self.n,
                "loss": [None] * self.n,
                "reasons": [None] * self.n,
                "detected": [None] * self.n,
            },
        )
        d["num_pos"][ci], d["loss"][ci], d["reasons"][ci], d["detected"][ci] = (
            g.num_pos,
            g.total,
            g.reason,
            g.detected,
        )

    def always_orphaned(self, seen: list[int]) -> list[dict[str, Any]]:
        return [d for d in self.gts.values() if all(d["num_pos"][i] == 0 for i in seen)]

    def always_high_loss(self, seen: list[int], q: float = HIGH_LOSS_QUANTILE) -> list[dict[str, Any]]:
        thresholds = {}
        for i in seen:
            losses = sorted(d["loss"][i] for d in self.gts.values() if d["loss"][i] is not None)
            thresholds[i] = losses[min(int(q * len(losses)), len(losses) - 1)] if losses else math.inf
        out = [
            d
            for d in self.gts.values()
            if all(
                d["loss"][i] is not None and d["loss"][i] > 0 and d["loss"][i] >= thresholds[i] for i in seen
            )
        ]
        return sorted(out, key=lambda d: -sum(d["loss"][i] for i in seen))


def trend(
    specs: Sequence[str | os.PathLike],
    job: ScanJob,
    workers: int = 1,
    window: int = WINDOW,
    on_record: Callable[[Any], None] | None = None,
    cps: list[Checkpoint] | None = None,
    ray: RayPool | None = None,
) -> dict[str, Any]:
    """Scan every checkpoint (``cps``: as :func:`checkpoints` groups ``specs``) -> ``yolodbg.trend/1``."""
    cps = checkpoints(specs) if cps is None else cps
    if not cps:
        raise InputError("trend: no bundles found; pass RUN_DIR folders or bundle files")
    files = [p for c in cps for p in c.paths]
    owner = [ci for ci, c in enumerate(cps) for _ in c.paths]
    guard = ModelGuard()  # one model across all checkpoints
    aggs = [ScanAggregate(top=0, guard=guard) for _ in cps]
    tracker = GtTracker(len(cps))

    def sink(i: int, rec) -> None:
        ci = owner[i]
        if isinstance(rec, Failed):
            aggs[ci].fail(rec.source, rec.message)
        else:
            aggs[ci].add(rec)
            for g in rec.gts:
                tracker.add(ci, g)
        if on_record is not None:
            on_record(rec)

    interrupted = drive(files, job, sink, workers, ray)
    docs = [a.summary() for a in aggs]
    seen = [i for i, a in enumerate(aggs) if a.bundles]
    return build_doc(cps, docs, tracker, seen, window, interrupted)


def _checkpoint_row(c: Checkpoint, d: dict) -> dict[str, Any]:
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


def build_doc(
    cps: list[Checkpoint],
    docs: list[dict],
    tracker: GtTracker,
    seen: list[int],
    window: int,
    interrupted: bool,
) -> dict[str, Any]:
    """Series, statuses and GT lists from the per-checkpoint scan documents."""
    names = list(next((d["terms"] for d in docs if d["bundles"]), {}))
    rows = [_checkpoint_row(c, d) for c, d in zip(cps, docs, strict=True)]
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
