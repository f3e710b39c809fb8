"""The ``yolodbg.audit/1`` document, from an :class:`~yolodbg.audit.merge.AuditAggregate`.

Every issue ranked best first (ids ``A0001``, ...), every image scored, and the calibration that
put the five issue types on one scale. See :mod:`yolodbg.audit.merge` and ``docs/audit.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodbg.audit.merge import AuditAggregate

SCHEMA = "yolodbg.audit/1"
TYPES = ("wrong_class", "bad_box", "missing_label", "spurious_label", "duplicate_label")
ISSUE_ORDER = ("id", "type", "score", "image_id", "ann_id", "bbox", "class", "class_name", "category_id")


def audit_doc(agg: AuditAggregate) -> dict[str, Any]:
    """The ``yolodbg.audit/1`` document of everything ``agg`` added so far."""
    issues, images, calibration = agg.ranked()
    return {
        "schema": SCHEMA,
        "recipe": ", ".join(sorted(agg.recipes)),
        "bundles": agg.bundles,
        "num_images": len(images),
        "num_gt": agg.num_gt,
        "checkpoints": agg.checkpoints(),
        "interrupted": agg.interrupted,
        "counts": {t: sum(1 for x in issues if x["type"] == t) for t in TYPES},
        "names": agg.names,
        "calibration": calibration,
        "issues": [_ordered(x) for x in issues],
        "images": images,
        "failed": agg.failed,
        "nonfinite": agg.nonfinite,
        "warnings": agg.warnings,
    }


def _ordered(x: dict[str, Any]) -> dict[str, Any]:
    """The issue's fields in a fixed order (id first), for readers of the JSON."""
    head = {k: x[k] for k in ISSUE_ORDER if k in x}
    return {**head, **{k: v for k, v in x.items() if k not in head}}
