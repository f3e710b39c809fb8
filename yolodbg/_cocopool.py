"""Pool COCOeval's per-image matches over many bundles, compactly, and score them with pycocotools.

``COCOeval.evaluate`` leaves, per (class, area range, image), the detections' scores, whether
each matched a GT at each IoU threshold, which of them are ignored, and which GTs are ignored.
:class:`ImageMatches` keeps exactly that for one image in a few arrays (flags bit-packed: about
6 kB for 300 detections), since a dataset's worth of pycocotools dicts would not stay small.
:class:`CocoAccumulator` rebuilds pycocotools' entries one class at a time, runs its own
``accumulate`` on them and its ``summarize`` on the pooled arrays: the same numbers as one
COCOeval over all images, with the images in COCOeval's order (sorted ids).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass(frozen=True)
class ImageMatches:
    """One image's COCOeval matches: for each class slot present, its detections and GTs (A area ranges)."""

    ks: tuple[int, ...]  # class slots with a GT or a detection here
    d_off: np.ndarray  # (P + 1,) detection offsets per slot
    g_off: np.ndarray  # (P + 1,) GT offsets per slot
    scores: np.ndarray  # (D,) float64, per slot best first (COCOeval's order, ≤ maxDet)
    dt_bits: np.ndarray  # packbits of (2, A, T, D) bool: matched, ignored
    gt_ignore: np.ndarray  # (A, G) bool

    def entries(self, k: int) -> list[dict[str, np.ndarray]]:
        """pycocotools' evalImg dicts (the keys ``accumulate`` reads) of slot ``k``, one per area range."""
        p = self.ks.index(k)
        d = slice(int(self.d_off[p]), int(self.d_off[p + 1]))
        g = slice(int(self.g_off[p]), int(self.g_off[p + 1]))
        flags = np.unpackbits(self.dt_bits, axis=-1, count=len(self.scores)).astype(bool)
        return [
            {
                "dtScores": self.scores[d],
                "dtMatches": flags[0, a, :, d],
                "dtIgnore": flags[1, a, :, d],
                "gtIgnore": self.gt_ignore[a, g],
            }
            for a in range(flags.shape[1])
        ]


@dataclass(frozen=True)
class CocoSummary:
    """COCO numbers over every image added (``nan`` where COCOeval reports -1: no GT)."""

    stats: dict[str, float]  # STAT_NAMES -> value
    per_class: dict[int, dict[str, float]]  # class index -> {"AP", "AP50"}
    num_images: int
    num_dets: int


class CocoAccumulator:
    """Collects per-image matches (``add``); :meth:`summary` scores them with pycocotools."""

    def __init__(self) -> None:
        self.cat_ids: tuple[int, ...] | None = None
        self.class_of_cat: dict[int, int] = {}
        self.images: dict[Any, list[ImageMatches]] = {}
        self.num_dets = 0

    def add(self, be: Any) -> None:
        """Add a :class:`yolodbg.evaluate.BundleEval`."""
        if self.cat_ids is None:
            self.cat_ids, self.class_of_cat = be.cat_ids, dict(be.class_of_cat)
        elif be.cat_ids != self.cat_ids:
            raise ValueError("bundles evaluated against different category lists cannot be pooled")
        for key, im in be.images.items():
            self.images.setdefault(key, []).append(im)
        self.num_dets += be.num_dets

    def summary(self) -> CocoSummary | None:
        """The pooled COCO numbers; ``None`` before any image was added."""
        from pycocotools.cocoeval import COCOeval

        if self.cat_ids is None or not self.images:
            return None
        ordered = [im for key in sorted(self.images) for im in self.images[key]]
        ev = COCOeval(iouType="bbox")
        p = ev.params
        t, r, n_k, n_a, n_m = (
            len(p.iouThrs),
            len(p.recThrs),
            len(self.cat_ids),
            len(p.areaRng),
            len(p.maxDets),
        )
        precision, scores = -np.ones((t, r, n_k, n_a, n_m)), -np.ones((t, r, n_k, n_a, n_m))
        recall = -np.ones((t, n_k, n_a, n_m))
        present: dict[int, list[int]] = {}
        for i, im in enumerate(ordered):
            for k in im.ks:
                present.setdefault(k, []).append(i)
        for k, images in present.items():  # one class at a time: pycocotools' accumulate on its entries
            sub = COCOeval(iouType="bbox")
            q = sub.params
            q.catIds, q.imgIds = [self.cat_ids[k]], list(range(len(images)))
            per_image = [ordered[i].entries(k) for i in images]
            sub.evalImgs = [per_image[j][a] for a in range(n_a) for j in range(len(images))]
            sub._paramsEval = copy.deepcopy(q)
            with contextlib.redirect_stdout(io.StringIO()):
                sub.accumulate()
            precision[:, :, k], scores[:, :, k] = sub.eval["precision"][:, :, 0], sub.eval["scores"][:, :, 0]
            recall[:, k] = sub.eval["recall"][:, 0]
        ev.eval = {
            "params": p,
            "counts": [t, r, n_k, n_a, n_m],
            "precision": precision,
            "recall": recall,
            "scores": scores,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            ev.summarize()
        stats = {n: _nan(float(v)) for n, v in zip(STAT_NAMES, ev.stats, strict=True)}
        per_class = {}
        for k, cat in enumerate(self.cat_ids):
            if cat in self.class_of_cat:
                pr = precision[:, :, k, 0, -1]
                per_class[self.class_of_cat[cat]] = {"AP": _mean_valid(pr), "AP50": _mean_valid(pr[0])}
        return CocoSummary(stats, per_class, len(ordered), self.num_dets)


def _mean_valid(pr: np.ndarray) -> float:
    return float(np.mean(pr[pr > -1])) if (pr > -1).any() else math.nan


def _nan(v: float) -> float:
    return math.nan if v < 0 else v
