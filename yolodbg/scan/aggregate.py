"""The reduce side of ``yolodbg scan``: :class:`BundleRecord` s in, the dataset report out.

Loss units: every bundle's terms are what its trainer logs for that batch, and every GT's
contribution is its share of them (docs/design.md, the pipeline). Loss sums here are sums over bundles of those
numbers, so Σ classes + background == Σ bundles' totals; ``terms`` in the report are the mean
per bundle (what a validation loop logs). Memory stays flat in the number of bundles except
for COCOeval's per-image match records (a few kB per image) and the capped lists.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from yolodbg.documents.scan import orphan_doc, scan_doc
from yolodbg.evaluate.coco import CocoAccumulator
from yolodbg.scan.records import SIZE_BUCKETS, BundleRecord, GtRecord

MAX_LISTED = 200  # orphans listed in the report (all of them are counted; --rows has every GT)
MAX_WARNINGS = 50


@dataclass
class Group:
    """Counts and loss sums over a set of GTs (a class, a size bucket, everything)."""

    num_gt: int = 0
    num_pos: int = 0
    orphans: int = 0  # GTs with no positive
    unreachable: int = 0  # GTs out of the recall ceiling
    evaluated: int = 0
    detected: int = 0
    loss: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)

    def add(self, g: GtRecord, term_names: list[str]) -> None:
        self.num_gt += 1
        self.num_pos += g.num_pos
        self.orphans += g.num_pos == 0
        self.unreachable += not g.reachable
        if g.detected is not None:
            self.evaluated += 1
            self.detected += g.detected
        self.loss += g.total
        for t in term_names:
            self.terms[t] = self.terms.get(t, 0.0) + g.terms.get(t, 0.0)


class _Top:
    """The K largest items by key; on ties the earliest added stays."""

    def __init__(self, k: int) -> None:
        self.k, self.heap, self.seq = k, [], 0

    def add(self, key: float, item: Any) -> None:
        if self.k <= 0 or not math.isfinite(key):
            return
        self.seq += 1
        entry = (key, -self.seq, item)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        elif entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    def items(self) -> list[Any]:
        return [e[2] for e in sorted(self.heap, key=lambda e: (-e[0], -e[1]))]


class ModelGuard:
    """Bundles added up must come from one model replayed by one recipe; the first bundle sets it.

    Terms of two recipes, classes of two class lists or levels of two stride sets do not add
    up: a bundle that differs is refused (a failed bundle, exit 2) with one line naming it, the
    first bundle and what differs. ``trend`` shares one guard between its checkpoints.
    """

    def __init__(self) -> None:
        self.first: _Signature | None = None

    def refuse(self, record: BundleRecord) -> str | None:
        """Why ``record`` cannot join the records seen so far (None: it can)."""
        rec = _Signature.of(record)
        if self.first is None:
            self.first = rec  # only the signature: the record itself may be large
            return None
        first = self.first
        diff = None
        if rec.recipe != first.recipe:
            diff = f"recipe: {rec.recipe} here, {first.recipe} there"
        else:
            for key, name in (("head", "head"), ("classes", "classes"), ("strides", "strides")):
                mine, theirs = rec.model.get(key), first.model.get(key)
                if mine is not None and theirs is not None and mine != theirs:
                    diff = f"{name}: {_show(mine)} here, {_show(theirs)} there"
                    break
            if diff is None:
                diff = _category_diff(rec, first)
        if diff is None:
            return None
        hint = ", or pass -r/--recipe to replay all with one recipe" if diff.startswith("recipe") else ""
        return f"not the model of {first.source}, the first bundle ({diff}); scan one model at a time{hint}"


@dataclass(frozen=True)
class _Signature:
    source: str
    recipe: str
    model: dict[str, Any]
    cat_ids: tuple[int, ...] | None

    @classmethod
    def of(cls, rec: BundleRecord) -> _Signature:
        cats = tuple(rec.coco.cat_ids) if rec.coco is not None else None
        return cls(rec.source, rec.recipe, rec.model, cats)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        shown = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value[:8])
        return shown + (",..." if len(value) > 8 else "")
    return str(value)


def _category_diff(rec: _Signature, first: _Signature) -> str | None:
    """Category ids recorded by the bundles, or those their evaluation used, must be the same."""
    for mine, theirs in (
        (rec.model.get("category_ids"), first.model.get("category_ids")),
        (rec.cat_ids, first.cat_ids),
    ):
        if mine is not None and theirs is not None and tuple(mine) != tuple(theirs):
            return f"category ids: {_show(tuple(mine))} here, {_show(tuple(theirs))} there"
    return None


class ScanAggregate:
    """Adds :class:`BundleRecord` s up (``add``) and writes the report (``summary``)."""

    def __init__(self, top: int = 15, max_listed: int = MAX_LISTED, guard: ModelGuard | None = None) -> None:
        self.guard = guard if guard is not None else ModelGuard()
        self.top, self.max_listed = top, max_listed
        self.recipe: str | None = None
        self.recall_ceiling = "reason_reachable"  # the reach rule of the recipe (from the first record)
        self.term_names: list[str] = []
        self.bundles = self.images = 0
        self.terms: dict[str, float] = {}
        self.objective = 0.0
        self.background: dict[str, float] = {}
        self.all = Group()
        self.classes: dict[int, Group] = {}
        self.category_of: dict[int, int | None] = {}
        self.buckets = {name: Group() for name, _ in SIZE_BUCKETS}
        self.levels: dict[int, dict[str, Any]] = {}
        self.reasons: Counter[str] = Counter()
        self.orphans: list[dict[str, Any]] = []
        self.top_images, self.top_gts, self.top_missed = _Top(top), _Top(top), _Top(top)
        self.offenders = _Top(top)
        self.warnings: Counter[str] = Counter()
        self.violations: list[str] = []
        self.nonfinite: list[str] = []
        self.failed: list[str] = []
        self.letterbox: Counter[str] = Counter()  # images whose GT a loader's letterbox mapped, per loader
        self.seen_images: dict[str, str] = {}  # image label -> the bundle that brought it
        self.duplicates: list[dict[str, Any]] = []  # bundles left out: they repeat images already counted
        self.coco = CocoAccumulator()
        self.evaluated = False
        self.interrupted = False

    def fail(self, source: str, message: str) -> None:
        """Record a bundle that could not be scanned (messages that already name it are kept as they are)."""
        self.failed.append(message if message.startswith(f"{source}:") else f"{source}: {message}")

    def add(self, rec: BundleRecord) -> None:
        why = self.guard.refuse(rec)  # two models do not add up: keep the first, name the rest
        if why is not None:
            self.fail(rec.source, why)
            return
        if self._repeats_images(rec):
            return
        if self.recipe is None:
            self.recipe, self.term_names = rec.recipe, list(rec.terms)
            self.recall_ceiling = rec.recall_ceiling
        self.bundles += 1
        self.images += rec.batch_size
        letterbox = rec.extra.get("letterbox")
        if letterbox:
            self.letterbox[letterbox["mode"]] += len(letterbox["images"])
        for t in self.term_names:
            self.terms[t] = self.terms.get(t, 0.0) + rec.terms.get(t, 0.0)
            self.background[t] = self.background.get(t, 0.0) + rec.background.get(t, 0.0)
        self.objective += rec.objective
        for lv in rec.levels:
            d = self.levels.setdefault(
                lv["level"], {"level": lv["level"], "stride": lv["stride"], "num_pos": 0, "fg": {}, "bg": {}}
            )
            d["num_pos"] += lv["num_pos"]
            for part in ("fg", "bg"):
                for t, v in lv[part].items():
                    d[part][t] = d[part].get(t, 0.0) + v
        for g in rec.gts:
            self._add_gt(g)
        for im in rec.images:
            self.top_images.add(im.total, im)
        for o in rec.offenders:
            self.offenders.add(o["contribution"], o)
        for w in rec.warnings:
            if w in self.warnings or len(self.warnings) < MAX_WARNINGS:
                self.warnings[w] += 1
        self.violations += [f"{rec.source}: {v}" for v in rec.violations]
        if rec.nonfinite:
            self.nonfinite.append(f"{rec.source}: {rec.nonfinite}")
        if rec.coco is not None:
            self.evaluated = True
            self.coco.add(rec.coco)

    def _repeats_images(self, rec: BundleRecord) -> bool:
        """A bundle with an image already counted (say, two checkpoints' bundles in one folder) is left
        out of every sum and of mAP: counting its GTs again would double their class and size
        statistics. It is listed in ``duplicates`` and warned about; the first bundle's images stay."""
        repeated = [im.image for im in rec.images if im.image in self.seen_images]
        if not repeated:
            self.seen_images.update((im.image, rec.source) for im in rec.images)
            return False
        first = sorted({self.seen_images[i] for i in repeated})
        self.duplicates.append(
            {
                "bundle": rec.source,
                "repeated_images": len(repeated),
                "images": repeated[:10],
                "first_in": first,
            }
        )
        shown = ", ".join(repeated[:3]) + (f" and {len(repeated) - 3} more" if len(repeated) > 3 else "")
        self.warnings[
            f"{rec.source}: repeats image id(s) {shown} of {', '.join(first)}; left out of the statistics and mAP "
            "(scan one checkpoint at a time, or use yolodbg trend)"
        ] += 1
        return True

    def _add_gt(self, g: GtRecord) -> None:
        names = self.term_names
        self.all.add(g, names)
        self.classes.setdefault(g.cls, Group()).add(g, names)
        self.category_of.setdefault(g.cls, g.category_id)
        self.buckets[g.bucket].add(g, names)
        self.top_gts.add(g.total, g)
        if g.detected is False:
            self.top_missed.add(g.total, g)
        if g.num_pos == 0:
            self.reasons[g.reason or "none"] += 1
            if len(self.orphans) < self.max_listed:
                self.orphans.append(orphan_doc(g))

    @property
    def total(self) -> float:
        return math.fsum(self.terms.values())

    def summary(self) -> dict[str, Any]:
        """The ``yolodbg.scan/1`` document of everything added so far (:func:`~yolodbg.documents.scan.scan_doc`)."""
        return scan_doc(self, self.recall_ceiling)
