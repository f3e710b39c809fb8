"""The ``yolodbg.compare/1`` document: N recipes on one bundle, or one recipe on two bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from yolodbg.documents.common import versions

if TYPE_CHECKING:
    from yolodbg.compare import AssignmentDiff, Column, Comparison, GtChange, MagnitudeHint, TermDelta

SCHEMA = "yolodbg.compare/1"


def _d(d: TermDelta) -> dict[str, float | None]:
    return {"base": d.base, "value": d.value, "abs": d.abs, "rel": d.rel}


def _gt_json(g: GtChange) -> dict[str, Any]:
    image, kind, ident = g.key
    return {
        "image": image,
        "ann_id": ident if kind == "ann" else None,
        "gt_index": ident if kind == "#" else None,
        "class": g.cls,
        "box_xyxy": list(g.box_xyxy),
        "num_pos": list(g.num_pos),
        "total": list(g.totals),
        "terms": list(g.terms),
        "delta": list(g.delta),
    }


def _ref(g: GtChange) -> dict[str, Any]:
    image, kind, ident = g.key
    return {"image": image, "ann_id" if kind == "ann" else "gt_index": ident}


def _column_doc(i: int, c: Column) -> dict[str, Any]:
    """One compared run (``columns[]``): its recipe, input and numbers, as the explain document has them."""
    ex, r = c.explanation, c.recipe
    res = ex.result
    return {
        "index": i,
        "label": c.label,
        "recipe": {
            "name": r.name,
            "spec": r.spec(),
            "params": res.params,
            "reproduces": r.reproduces,
        },
        "input": {
            "bundle": c.bundle.source,
            "digest": c.bundle.digest,
            "ground_truth": ex.targets.source,
        },
        "objective": res.objective,
        "terms": dict(res.terms),
        "extra_terms": dict(res.extra_terms),
        "total": ex.breakdown.total,
        "batch_size": res.batch_size,
        "num_gt": len(ex.targets),
        "num_pos": ex.breakdown.num_pos,
        "normalizers": res.normalizers,
        "notes": res.notes,
    }


def _assignment_doc(a: AssignmentDiff) -> dict[str, Any]:
    """How a column's assignment differs from the baseline's (``assignment[]``)."""
    return {
        "column": a.column,
        "same_assigner_params": a.same_params,
        "unchanged": a.unchanged,
        "anchors_comparable": a.anchors_comparable,
        "added_positives": a.added,
        "removed_positives": a.removed,
        "switched_anchors": a.switched,
        "switch_examples": [
            {"image": s.image, **s.anchor, "before": s.before, "after": s.after} for s in a.switches
        ],
        "pos_count_changed": [{**_ref(g), "before": n0, "after": n1} for g, n0, n1 in a.pos_changed],
        "became_orphans": [_ref(g) for g in a.became_orphans],
        "stopped_orphans": [_ref(g) for g in a.stopped_orphans],
    }


def _hint_doc(h: MagnitudeHint) -> dict[str, Any]:
    """A term whose new form changed its size, and the gain that would bring it back (``magnitude_hints[]``)."""
    return {
        "column": h.column,
        "term": h.term,
        "from": h.base_form,
        "to": h.form,
        "base_value": h.base_value,
        "value": h.value,
        "gain_key": h.gain_key,
        "gain": h.gain,
        "suggested_gain": h.suggested,
    }


def compare_doc(cmp: Comparison) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "mode": cmp.mode,
        "baseline": 0,
        "columns": [_column_doc(i, c) for i, c in enumerate(cmp.columns)],
        "term_names": cmp.terms,
        "extra_term_names": cmp.extra_terms,
        "deltas": [{"column": i, **{k: _d(v) for k, v in d.items()}} for i, d in enumerate(cmp.deltas)],
        "assignment": [_assignment_doc(a) for a in cmp.assignment],
        "gts": [_gt_json(g) for g in cmp.gts],
        "magnitude_hints": [_hint_doc(h) for h in cmp.hints],
        "why": {aspect: values for aspect, values in cmp.why},
        "notes": cmp.notes,
        "warnings": cmp.warnings + cmp.violations,
        "versions": versions(),
    }
