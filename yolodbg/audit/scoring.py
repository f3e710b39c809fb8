"""Scores of the five issue types, each on one scale: an estimate of the chance the label is wrong.

Every type turns its evidence (numbers the replay computed: class scores at the anchors whose
decoded box covers a GT, the consensus box of the anchors that agree on an object, ...) into a
value in [0, 1] with the same meaning, so one ranked list mixes the types fairly and an image's
score is the noisy-or of its issues. The functions are small and monotone on purpose: a reader
can check a score by hand from the evidence in the report (docs/audit.md, "How scores are made").
"""

from __future__ import annotations

import math

# evidence thresholds (IoU of a decoded anchor box with a GT box)
OWN_IOU = 0.5  # an anchor's box "is on" a GT: its class scores speak about that GT's class
SUPPORT_IOU = 0.3  # an anchor's box "touches" a GT: any score there is support for the GT existing
ATTACH_IOU = 0.1  # an anchor may vote for a GT's box (the consensus) from this overlap on
CLUSTER_IOU = 0.6  # anchors whose boxes overlap the seed's this much are one object (the consensus)
FREE_IOU = 0.5  # a confident anchor box overlapping every GT less than this may be on an unlabelled object
DUPLICATE_IOU = 0.9  # two GTs of one class this much overlapped are one object labelled twice
ANCHOR_FLOOR = 0.01  # anchors below this best class score are not evidence of anything
MISSING_FLOOR = 0.03  # a cluster of background anchors must reach this score to be a missing label
MAX_ANCHORS = 3000  # evidence anchors per image, best scores first (a bound on the cost)

# calibration (docs/audit.md): where each type's score starts, and what makes it certain
BOX_IOU_OK = 0.8  # a consensus box this close to the GT is no evidence of a bad box
BOX_IOU_BAD = 0.3  # ... and this far is full evidence
SUPPORT_SOME = 0.05  # a GT with this much support (best score of anything at it) is not spurious at all
SUPPORT_NOTHING = 0.0005  # ... and with this little, as unsupported as it gets
FLOOR_SCORE = 0.01  # issues scoring below this are not reported


def clamp01(x: float) -> float:
    return 0.0 if x <= 0.0 or math.isnan(x) else 1.0 if x >= 1.0 else float(x)


def wrong_class(own: float, other: float, pos_own: float = 0.0, pos_other: float = 0.0) -> float:
    """The anchors on the GT give another class ``other`` and its own class ``own``; its positives
    give them ``pos_other`` and ``pos_own`` on average.

    ``other − own`` (or, where no anchor box lies on the GT, as for many tiny objects, the
    positives' ``pos_other − pos_own``, whichever is larger): a confident other class counts fully
    only when the labelled class gets nothing there; two close scores (an ambiguous object) count
    little.

    >>> round(wrong_class(0.05, 0.9), 3), wrong_class(0.6, 0.5), round(wrong_class(0.0, 0.0, 0.01, 0.09), 3)
    (0.85, 0.0, 0.08)
    """
    return clamp01(max(other - own, pos_other - pos_own, 0.0))


def bad_box(conf: float, iou: float) -> float:
    """The agreeing anchors of the GT's class put the object at a box of IoU ``iou`` with the GT,
    with best score ``conf``: ``√conf × badness``, badness 0 at IoU ≥ 0.8 rising linearly to 1 at
    IoU ≤ 0.3. The square root: a box clearly elsewhere is strong evidence even when the model is
    only moderately sure of the object (it is sure the object is not where the label says).

    >>> bad_box(0.9, 0.85), round(bad_box(0.81, 0.55), 3), round(bad_box(0.81, 0.2), 3)
    (0.0, 0.45, 0.9)
    """
    badness = clamp01((BOX_IOU_OK - iou) / (BOX_IOU_OK - BOX_IOU_BAD))
    return clamp01(math.sqrt(max(conf, 0.0)) * badness)


def missing_label(score: float, free_iou: float) -> float:
    """A cluster of background anchors agrees on an object with best class score ``score`` whose box
    overlaps every GT at most ``free_iou``: the score, reduced as the overlap nears :data:`FREE_IOU`.

    >>> missing_label(0.8, 0.0), round(missing_label(0.8, 0.25), 3)
    (0.8, 0.4)
    """
    return clamp01(score * clamp01(1.0 - free_iou / FREE_IOU))


def spurious_support(evidence: dict) -> float:
    """What answers a GT at all: the best of its support, the score of the object of its class
    under it (the consensus) and the mean scores its positives give any class (these last ones are
    tiny when nothing is there, and order the GTs that nothing else separates)."""
    keys = ("support", "consensus_score", "pos_own_score", "pos_other_score")
    return max(float(evidence.get(k) or 0.0) for k in keys)


def spurious_label(support: float) -> float:
    """The best score of anything at the GT is ``support``: 1 at :data:`SUPPORT_NOTHING` or less,
    0 at :data:`SUPPORT_SOME` or more, linear in log(support) between. On a log scale because a
    detector's scores on empty background sit orders of magnitude below those on a real object it
    only half sees (1e-4 against 1e-2): the order of magnitude is the evidence.

    >>> spurious_label(0.0), spurious_label(0.005), spurious_label(0.05)
    (1.0, 0.5, 0.0)
    """
    if support <= SUPPORT_NOTHING:
        return 1.0
    return clamp01(math.log(SUPPORT_SOME / support) / math.log(SUPPORT_SOME / SUPPORT_NOTHING))


def duplicate_label(iou: float) -> float:
    """Two same-class GTs with IoU ``iou`` ≥ 0.9: 0.9 at the threshold, 1 for identical boxes.

    >>> duplicate_label(0.9), duplicate_label(1.0), duplicate_label(0.5)
    (0.9, 1.0, 0.0)
    """
    if iou < DUPLICATE_IOU:
        return 0.0
    return clamp01(0.9 + (iou - DUPLICATE_IOU))


SIZE_EDGES = (16.0, 32.0, 64.0)  # √area buckets (original pixels) of the size calibration
CALIBRATION_MIN_GTS = 30  # a size bucket needs this many GTs to be calibrated on its own
CALIBRATION_SMOOTHING = 0.02


def size_bucket(w: float, h: float) -> int:
    """Index of the √area bucket of a box: < 16, < 32, < 64, ≥ 64 px.

    >>> size_bucket(10, 10), size_bucket(20, 40), size_bucket(100, 100)
    (0, 1, 3)
    """
    side = math.sqrt(max(w, 0.0) * max(h, 0.0))
    return sum(side >= e for e in SIZE_EDGES)


def spurious_factors(unsupported: list[int], counts: list[int]) -> list[float]:
    """Per size bucket, how much "no support" says about a spurious label, from the data set itself.

    A model misses more real objects at some sizes (tiny ones) than at others. Of the GTs of a
    bucket, a fraction ``u`` is unsupported: spurious labels plus real objects the model misses.
    The bucket where the model misses least bounds the spurious rate (spurious boxes do not
    choose a size), so in a bucket with more unsupported GTs, one of them is spurious with chance
    about ``u_best / u``: the factor (smoothed by 0.02, at most 1; buckets with fewer than 30 GTs
    get the factor of the whole set).

    >>> [round(f, 3) for f in spurious_factors([1, 10, 2], [100, 100, 100])]
    [1.0, 0.25, 0.75]
    """
    rates = [u / n if n >= CALIBRATION_MIN_GTS else None for u, n in zip(unsupported, counts, strict=True)]
    known = [r for r in rates if r is not None]
    if not known:
        return [1.0] * len(counts)
    best = min(known)
    whole = sum(unsupported) / max(sum(counts), 1)
    c = CALIBRATION_SMOOTHING
    return [min(1.0, (best + c) / ((whole if r is None else r) + c)) for r in rates]


def persistent(scores: list[float], observed: int) -> float:
    """One issue seen with ``scores`` in some of the ``observed`` bundles (checkpoints) of its image.

    ``1 − Π(1 − s)^(1/√observed)``: one checkpoint gives its score; the same score in every one of
    n checkpoints rises (n = 4, s = 0.5 → 0.75); a score seen in one checkpoint of four falls (→ 0.29).

    >>> persistent([0.5], 1), persistent([0.5] * 4, 4), round(persistent([0.5], 4), 2)
    (0.5, 0.75, 0.29)
    """
    observed = max(observed, len(scores), 1)
    log_keep = sum(math.log1p(-min(s, 1.0 - 1e-12)) for s in scores)
    return clamp01(1.0 - math.exp(log_keep / math.sqrt(observed)))


def image_score(scores: list[float]) -> float:
    """Chance the image holds at least one label error: the noisy-or of its issues' scores.

    >>> image_score([]), image_score([0.5, 0.5])
    (0.0, 0.75)
    """
    return clamp01(1.0 - math.prod(1.0 - s for s in scores))
