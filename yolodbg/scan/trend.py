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

The thresholds and the rule live in :mod:`yolodbg.scan.status` (shared with ``--help``); the
document is built in :mod:`yolodbg.documents.trend`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolodbg.documents.trend import trend_doc
from yolodbg.errors import InputError
from yolodbg.scan.aggregate import ModelGuard, ScanAggregate
from yolodbg.scan.records import GtRecord
from yolodbg.scan.run import Failed, ScanJob, drive, expand
from yolodbg.scan.status import WINDOW

if TYPE_CHECKING:
    from yolodbg.scan.executor import Executor

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
        labels = unique_suffixes(specs)
        return [Checkpoint(lab, None, tuple(g)) for lab, g in zip(labels, groups, strict=True)]
    return [Checkpoint(lab, None, (f,)) for lab, f in zip(unique_suffixes(files), files, strict=True)]


def unique_suffixes(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Each path's shortest tail of components that no other path ends with: distinct, short labels.

    >>> unique_suffixes(["/tmp/a/run/epoch0", "/tmp/b/run/epoch0", "/tmp/b/run/epoch1"])
    ['a/run/epoch0', 'b/run/epoch0', 'epoch1']

    The same path given twice keeps its full form and a number (``#2``), so labels stay distinct.
    """
    parts = [Path(p).parts for p in paths]
    labels = []
    for i, mine in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i]
        k = next((k for k in range(1, len(mine) + 1) if all(q[-k:] != mine[-k:] for q in others)), len(mine))
        labels.append(str(Path(*mine[-k:])) if mine else str(paths[i]))
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        seen[lab] = seen.get(lab, 0) + 1
        if seen[lab] > 1:
            labels[i] = f"{lab} #{seen[lab]}"
    return labels


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
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Scan every checkpoint (``cps``: as :func:`checkpoints` groups ``specs``) -> ``yolodbg.trend/1``.

    ``executor``: what maps the bundles (a ``RayPool`` for ``--ray``); None runs locally on ``workers``."""
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

    interrupted = drive(files, job, sink, workers, executor)
    docs = [a.summary() for a in aggs]
    seen = [i for i, a in enumerate(aggs) if a.bundles]
    return trend_doc(cps, docs, tracker, seen, window, interrupted)
