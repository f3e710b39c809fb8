"""The reduce of ``audit``: bundle evidence -> one ranked list of issues and a score per image.

An image met in several bundles (bundles of several checkpoints on the same images) is one
image: its issues are matched across the bundles (the same type on the same annotation; for a
missing label, predicted boxes with IoU ≥ 0.5), and an issue's score combines what every
checkpoint said (:func:`~yolodbg.audit.scoring.persistent`): ``checkpoints`` counts the bundles
that flag it, ``observed`` the bundles that show its image.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from yolodbg.audit import scoring as sc

MATCH_IOU = 0.5  # two checkpoints' missing-label boxes at least this overlapped are one suspect


def _iou_xywh(a: list[float], b: list[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def spurious_raw(evidence: dict[str, Any]) -> float:
    """The uncalibrated spurious-label score of a GT from its evidence row."""
    return sc.spurious_label(sc.spurious_support(evidence))


def _image_key(image_id: Any) -> str:
    return f"{type(image_id).__name__}:{image_id}"


class AuditAggregate:
    """Adds bundle records up; :meth:`document` ranks them (issues are small: kept in memory)."""

    def __init__(self) -> None:
        self.bundles = 0
        self.failed: list[str] = []
        self.nonfinite: list[str] = []
        self.warnings: list[str] = []
        self.recipes: set[str] = set()
        self.names: list[str] | None = None
        self.interrupted = False
        self._images: dict[str, dict[str, Any]] = {}
        self._observed: dict[str, int] = defaultdict(int)
        self._groups: dict[str, list[list[dict[str, Any]]]] = defaultdict(
            list
        )  # image -> groups of one issue
        self.num_gt = 0
        n = len(sc.SIZE_EDGES) + 1
        self._size_counts, self._size_unsupported = [0] * n, [0] * n  # per √area bucket, for calibration

    def fail(self, source: str, message: str) -> None:
        self.failed.append(f"{source}: {message}")

    def add(self, rec) -> None:
        self.bundles += 1
        self.recipes.add(rec.recipe)
        self.names = self.names or rec.names
        if rec.nonfinite:
            self.nonfinite.append(f"{rec.source}: {rec.nonfinite}")
        for w in rec.warnings:
            if w not in self.warnings and len(self.warnings) < 20:
                self.warnings.append(w)
        seen_here: set[str] = set()
        for im in rec.images:
            key = _image_key(im["image_id"])
            if key not in seen_here:
                seen_here.add(key)
                self._observed[key] += 1
                if key not in self._images:
                    self._images[key] = {**im, "source": rec.source}
                    self.num_gt += im["gts"]
        for g in rec.gts:
            b = sc.size_bucket(g["bbox"][2], g["bbox"][3])
            self._size_counts[b] += 1
            self._size_unsupported[b] += spurious_raw(g["evidence"]) >= 0.5
        for issue in rec.issues:
            self._group(_image_key(issue["image_id"]), {**issue, "source": rec.source})

    def calibration(self) -> dict[str, Any]:
        """The data-set calibration of spurious labels by size (see :func:`scoring.spurious_factors`)."""
        factors = sc.spurious_factors(self._size_unsupported, self._size_counts)
        return {
            "spurious_label": {
                "size_edges_px": list(sc.SIZE_EDGES),
                "gts": list(self._size_counts),
                "unsupported": list(self._size_unsupported),
                "factor": [round(f, 4) for f in factors],
            }
        }

    def _calibrated(self, factors: list[float]) -> None:
        """Spurious-label scores times the factor of their size bucket (raw score kept in the evidence)."""
        for groups in self._groups.values():
            for group in groups:
                for x in group:
                    if x["type"] == "spurious_label" and "raw_score" not in x["evidence"]:
                        f = factors[sc.size_bucket(x["bbox"][2], x["bbox"][3])]
                        x["evidence"] = {**x["evidence"], "raw_score": x["score"], "size_factor": round(f, 4)}
                        x["score"] = round(x["score"] * f, 6)

    def _group(self, key: str, issue: dict[str, Any]) -> None:
        for group in self._groups[key]:
            first = group[0]
            if first["type"] != issue["type"]:
                continue
            if issue["type"] == "missing_label":
                if _iou_xywh(first["bbox"], issue["bbox"]) >= MATCH_IOU:
                    group.append(issue)
                    return
            elif first["ann_key"] == issue["ann_key"]:
                group.append(issue)
                return
        self._groups[key].append([issue])

    def _merged(self, key: str, group: list[dict[str, Any]]) -> dict[str, Any]:
        best = max(group, key=lambda x: x["score"])
        observed = max(self._observed[key], len(group))
        out = {k: v for k, v in best.items() if k not in ("ann_key", "source")}
        out["score"] = round(sc.persistent([x["score"] for x in group], observed), 6)
        out["checkpoints"] = len(group)
        out["observed"] = observed
        out["source"] = best["source"]
        return out

    def ranked(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """(issues best first with their ids, images most suspect first, the calibration used)."""
        calibration = self.calibration()
        self._calibrated(calibration["spurious_label"]["factor"])
        issues = [self._merged(k, g) for k, groups in self._groups.items() for g in groups]
        issues = [x for x in issues if x["score"] >= sc.FLOOR_SCORE]
        issues.sort(key=lambda x: (-x["score"], str(x["image_id"]), str(x["ann_id"]), x["type"]))
        width = max(4, len(str(len(issues))))
        per_image: dict[str, list[float]] = defaultdict(list)
        for n, x in enumerate(issues, 1):
            x["id"] = f"A{n:0{width}d}"
            per_image[_image_key(x["image_id"])].append(x["score"])
        images = [self._image_doc(key, im, per_image.get(key, [])) for key, im in self._images.items()]
        images.sort(key=lambda x: (-x["score"], str(x["image_id"])))
        return issues, images, calibration

    def _image_doc(self, key: str, im: dict[str, Any], scores: list[float]) -> dict[str, Any]:
        return {
            "image_id": im["image_id"],
            "file_name": im["file_name"],
            "score": round(sc.image_score(scores), 6),
            "issues": len(scores),
            "gts": im["gts"],
            "width": im.get("width"),
            "height": im.get("height"),
            "observed": self._observed[key],
        }

    def document(self) -> dict[str, Any]:
        """The ``yolodbg.audit/1`` document: every issue ranked, every image scored."""
        from yolodbg.documents.audit import audit_doc

        return audit_doc(self)

    def checkpoints(self) -> int:
        """The most bundles that showed one image."""
        return max(self._observed.values(), default=0)
