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
import functools
import io
import math
from collections.abc import Iterator
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
    dt_bits: np.ndarray  # (D, bytes) packbits of each detection's (2, A, T) bool flags: matched, ignored
    gt_ignore: np.ndarray  # (A, G) bool

    @staticmethod
    def pack(flags: np.ndarray) -> np.ndarray:
        """``(2, A, T, D)`` bool flags -> :attr:`dt_bits` (a detection's flags in one row, for fast gathers)."""
        return np.packbits(flags.reshape(math.prod(flags.shape[:-1]), flags.shape[-1]).T, axis=-1)

    def flags(self) -> np.ndarray:
        """``(D, 2, A, T)`` bool: the unpacked :attr:`dt_bits`."""
        n_area = self.gt_ignore.shape[0]
        return unpack_flags(self.dt_bits, n_area)

    def entries(self, k: int) -> list[dict[str, np.ndarray]]:
        """pycocotools' evalImg dicts (the keys ``accumulate`` reads) of slot ``k``, one per area range."""
        p = self.ks.index(k)
        d = slice(int(self.d_off[p]), int(self.d_off[p + 1]))
        g = slice(int(self.g_off[p]), int(self.g_off[p + 1]))
        flags = self.flags()
        return [
            {
                "dtScores": self.scores[d],
                "dtMatches": flags[d, 0, a].T,
                "dtIgnore": flags[d, 1, a].T,
                "gtIgnore": self.gt_ignore[a, g],
            }
            for a in range(flags.shape[2])
        ]


def unpack_flags(bits: np.ndarray, n_area: int) -> np.ndarray:
    """``(D, bytes)`` packed rows -> ``(D, 2, A, T)`` bool (T: the rest of the bits, COCO's 10 thresholds)."""
    n_thr = len(_iou_thresholds())
    flags = np.unpackbits(bits, axis=-1, count=2 * n_area * n_thr)  # 0 and 1: a bool view is exact
    return flags.reshape(len(bits), 2, n_area, n_thr).view(bool)


@functools.cache
def _iou_thresholds() -> np.ndarray:
    from pycocotools.cocoeval import Params

    return Params(iouType="bbox").iouThrs


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
        """Add a :class:`yolodbg.evaluate.coco.BundleEval`."""
        if self.cat_ids is None:
            self.cat_ids, self.class_of_cat = be.cat_ids, dict(be.class_of_cat)
        elif be.cat_ids != self.cat_ids:
            raise ValueError("bundles evaluated against different category lists cannot be pooled")
        for key, im in be.images.items():
            self.images.setdefault(key, []).append(im)
        self.num_dets += be.num_dets

    def arrays(
        self, reference: bool = False, every_max_det: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COCOeval's ``precision (T,R,K,A,M)``, ``recall (T,K,A,M)`` and ``scores`` over every image added.

        ``every_max_det=False``: precision and scores only at the last maxDet (100), the only ones
        ``COCOeval.summarize`` reads (its AP numbers); the others stay -1. Recall is always complete.
        """
        from pycocotools.cocoeval import Params

        p = Params(iouType="bbox")
        shape = (len(p.iouThrs), len(p.recThrs), len(self.cat_ids or ()), len(p.areaRng), len(p.maxDets))
        precision, scores = -np.ones(shape), -np.ones(shape)
        recall = -np.ones(shape[:1] + shape[2:])
        ordered = [im for key in sorted(self.images) for im in self.images[key]]
        if reference:
            for k, parts in _by_class(ordered).items():
                precision[:, :, k], recall[:, k], scores[:, :, k] = _accumulate_reference(
                    self.cat_ids[k], parts, p
                )
        else:
            for k, part in _Pooled.of(ordered, len(p.areaRng)).by_class():
                precision[:, :, k], recall[:, k], scores[:, :, k] = _accumulate_class(*part, p, every_max_det)
        return precision, recall, scores

    def summary(self, reference: bool = False) -> CocoSummary | None:
        """The pooled COCO numbers; ``None`` before any image was added.

        ``reference=True`` runs pycocotools' own ``accumulate`` class by class instead of
        :func:`_accumulate_class` (same numbers, many times slower; tests compare the two).
        """
        from pycocotools.cocoeval import COCOeval

        if self.cat_ids is None or not self.images:
            return None
        ev = COCOeval(iouType="bbox")
        p = ev.params
        precision, recall, scores = self.arrays(reference, every_max_det=reference)
        t, r, n_k, n_a, n_m = precision.shape
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
        return CocoSummary(stats, per_class, sum(map(len, self.images.values())), self.num_dets)


_Part = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]  # scores (D,), matched, ignored (A,T,D), gt_ignore (A,G)


def _by_class(ordered: list[ImageMatches]) -> dict[int, list[_Part]]:
    """Per class slot, one part per image where it is present, in image order (flags unpacked once)."""
    out: dict[int, list[_Part]] = {}
    for im in ordered:
        if not im.ks:
            continue
        flags = im.flags().transpose(1, 2, 3, 0)  # (2, A, T, D)
        for j, k in enumerate(im.ks):
            d = slice(int(im.d_off[j]), int(im.d_off[j + 1]))
            g = slice(int(im.g_off[j]), int(im.g_off[j + 1]))
            out.setdefault(k, []).append(
                (im.scores[d], flags[0][..., d], flags[1][..., d], im.gt_ignore[:, g])
            )
    return out


@dataclass(frozen=True)
class _Pooled:
    """Every image's detections and GTs in one set of arrays, in image order, each tagged with its class slot."""

    scores: np.ndarray  # (D,)
    rank: np.ndarray  # (D,) place of the detection among its image's detections of its class
    bits: np.ndarray  # (D, bytes) packed flags (:attr:`ImageMatches.dt_bits`)
    n_area: int
    det_class: np.ndarray  # (D,) class slot
    gt_ignore: np.ndarray  # (A, G) bool
    gt_class: np.ndarray  # (G,) class slot

    @classmethod
    def of(cls, ordered: list[ImageMatches], n_area: int) -> _Pooled:
        ims = [im for im in ordered if im.ks]
        if not ims:
            z = np.zeros(0, np.int64)
            return cls(z, z, np.zeros((0, 0), np.uint8), n_area, z, np.zeros((n_area, 0), bool), z)
        d_len = [np.diff(im.d_off) for im in ims]
        g_len = [np.diff(im.g_off) for im in ims]
        return cls(
            scores=np.concatenate([im.scores for im in ims]),
            rank=np.concatenate(
                [
                    np.arange(int(im.d_off[-1])) - np.repeat(im.d_off[:-1], n)
                    for im, n in zip(ims, d_len, strict=True)
                ]
            ),
            bits=np.concatenate([im.dt_bits for im in ims]),
            n_area=n_area,
            det_class=np.concatenate([np.repeat(im.ks, n) for im, n in zip(ims, d_len, strict=True)]),
            gt_ignore=np.concatenate([im.gt_ignore for im in ims], -1),
            gt_class=np.concatenate([np.repeat(im.ks, n) for im, n in zip(ims, g_len, strict=True)]),
        )

    def by_class(self) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """Per class slot present: its detections' (scores, rank, flags) and its GTs' ignore flags, each in
        image order (a stable sort by class)."""
        present = np.union1d(self.det_class, self.gt_class).astype(np.int64)
        d_order = np.argsort(self.det_class, kind="stable")
        g_order = np.argsort(self.gt_class, kind="stable")
        d_sorted, g_sorted = self.det_class[d_order], self.gt_class[g_order]
        d_cut = (
            np.searchsorted(d_sorted, present, side="left"),
            np.searchsorted(d_sorted, present, side="right"),
        )
        g_cut = (
            np.searchsorted(g_sorted, present, side="left"),
            np.searchsorted(g_sorted, present, side="right"),
        )
        for k, d0, d1, g0, g1 in zip(present.tolist(), *d_cut, *g_cut, strict=True):
            d = d_order[d0:d1]
            flags = unpack_flags(self.bits[d], self.n_area)
            yield k, (self.scores[d], self.rank[d], flags, self.gt_ignore[:, g_order[g0:g1]])


def _accumulate_class(
    dt_scores: np.ndarray,
    rank: np.ndarray,
    flags: np.ndarray,
    gt_ignore: np.ndarray,
    p: Any,
    every_max_det: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``COCOeval.accumulate`` for one category: precision (T,R,A,M), recall (T,A,M), scores (T,R,A,M).

    Inputs: the category's detections over all images in image order — scores (D,), place in their
    image (D,), matched and ignored flags (D,2,A,T) — and its GTs' ignore flags (A,G).
    The same arithmetic as pycocotools (detections of each image cut to maxDet, pooled, stably
    sorted by score; cumulative TP/FP; precision made monotone from the right; read at the
    recall thresholds, 0 past the last detection), with its per-detection Python loop replaced
    by a reversed running maximum, and the area ranges at once (the sort depends on maxDet only).
    ``every_max_det=False``: below the last maxDet only the recall, which is the count of true
    positives (no sort needed).
    """
    n_t, n_r, n_a, n_m = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    precision, scores = -np.ones((n_t, n_r, n_a, n_m)), -np.ones((n_t, n_r, n_a, n_m))
    recall = -np.ones((n_t, n_a, n_m))
    npig = np.count_nonzero(gt_ignore == 0, axis=-1) if gt_ignore.size else np.zeros(n_a, np.int64)
    areas = np.flatnonzero(npig)  # area ranges with a GT to recall; the others stay -1
    if not len(areas):
        return precision, recall, scores
    matched, kept = flags[:, 0][:, areas], ~flags[:, 1][:, areas]  # (D, A', T): detections first
    tp = matched & kept
    fp = ~matched & kept
    rec_thrs = np.asarray(p.recThrs)
    for m, max_det in enumerate(p.maxDets):
        sel = np.flatnonzero(rank < max_det)
        if not every_max_det and m < n_m - 1:
            recall[:, areas, m] = (np.count_nonzero(tp[sel], axis=0) / npig[areas, None]).T
            continue
        order = sel[np.argsort(-dt_scores[sel], kind="mergesort")]
        s_sorted = dt_scores[order]
        # counts: int32 sums (fast), exact in float64 as pycocotools' float cumsum
        tp_sum = np.cumsum(tp[order], axis=0, dtype=np.int32).astype(np.float64)
        fp_sum = np.cumsum(fp[order], axis=0, dtype=np.int32).astype(np.float64)
        nd = len(order)
        rc = tp_sum / npig[areas, None]
        pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        recall[:, areas, m] = rc[-1].T if nd else 0
        envelope = np.maximum.accumulate(pr[::-1], axis=0)[::-1]
        rc_t, env_t = rc.transpose(1, 2, 0).copy(), envelope.transpose(1, 2, 0).copy()  # (A', T, n)
        for i, a in enumerate(areas):
            for t in range(n_t):
                at = np.searchsorted(rc_t[i, t], rec_thrs, side="left")
                ok = at < nd
                q, ss = np.zeros(n_r), np.zeros(n_r)
                q[ok], ss[ok] = env_t[i, t, at[ok]], s_sorted[at[ok]]
                precision[t, :, a, m], scores[t, :, a, m] = q, ss
    return precision, recall, scores


def _accumulate_reference(cat: int, parts: list[_Part], p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocotools' own ``accumulate`` on the parts of one category (for tests)."""
    from pycocotools.cocoeval import COCOeval

    sub = COCOeval(iouType="bbox")
    q = sub.params
    q.catIds, q.imgIds = [cat], list(range(len(parts)))
    sub.evalImgs = [
        {"dtScores": sc, "dtMatches": mt[a], "dtIgnore": ig[a], "gtIgnore": gi[a]}
        for a in range(len(q.areaRng))
        for sc, mt, ig, gi in parts
    ]
    sub._paramsEval = copy.deepcopy(q)
    with contextlib.redirect_stdout(io.StringIO()):
        sub.accumulate()
    return sub.eval["precision"][:, :, 0], sub.eval["recall"][:, 0], sub.eval["scores"][:, :, 0]


def _mean_valid(pr: np.ndarray) -> float:
    return float(np.mean(pr[pr > -1])) if (pr > -1).any() else math.nan


def _nan(v: float) -> float:
    return math.nan if v < 0 else v
