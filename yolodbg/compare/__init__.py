"""The ``compare`` job as a library call: N recipes on one bundle, or two bundles under one recipe.

Column 0 is the baseline; every other column is compared with it: per-term totals (absolute and
relative deltas), the assignment (GTs whose positive count changed, GTs that became or stopped
being orphans, anchors that switched GT), per-GT contributions ranked by their change, the gain
that would restore a swapped term's magnitude, and what makes two recipes' numbers differ.

GTs are matched across columns by ``(image, annotation id)``, or ``(image, index in the image)``
when the ground truth has no ids; images by their id (else file name, else batch index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from yolodbg.breakdown import GtRow
from yolodbg.bundle import Bundle
from yolodbg.compare.hints import MagnitudeHint, magnitude_hints, why_rows
from yolodbg.errors import InputError
from yolodbg.explain import Explanation, explain
from yolodbg.recipes.base import Recipe

Key = tuple  # (image key, "ann", id) or (image key, "#", index in the image)


@dataclass(frozen=True)
class Column:
    label: str
    explanation: Explanation

    @property
    def recipe(self) -> Recipe:
        return self.explanation.recipe

    @property
    def bundle(self) -> Bundle:
        return self.explanation.bundle


@dataclass(frozen=True)
class TermDelta:
    base: float | None
    value: float | None
    abs: float | None  # value − base
    rel: float | None  # abs / |base|; None when base is 0 or missing


@dataclass(frozen=True)
class GtChange:
    key: Key
    image: str  # image label (id, file name or #index)
    ident: str  # "ann 1234" or "#2"
    cls: int
    box_xyxy: tuple[float, float, float, float]
    num_pos: tuple[int | None, ...]  # per column; None = the GT is absent from that column
    totals: tuple[float | None, ...]
    terms: tuple[dict[str, float] | None, ...]
    delta: tuple[float | None, ...]  # per column: total − baseline total
    class_label: str = ""  # the class as every report writes it (``square (2)``; yolodbg.class_names)

    @property
    def change(self) -> float:
        return max((abs(d) for d in self.delta if d is not None), default=0.0)


@dataclass(frozen=True)
class Switch:
    image: str
    anchor: dict
    before: str  # GT ident in the baseline
    after: str


@dataclass(frozen=True)
class AssignmentDiff:
    column: int
    same_params: bool | None  # the assigner parameters are equal (None: different recipes or bundles)
    unchanged: bool  # every anchor has the same GT (or background) in both columns
    pos_changed: list[tuple[GtChange, int, int]]  # GT, positives in the baseline, here
    became_orphans: list[GtChange]
    stopped_orphans: list[GtChange]
    added: int  # anchors positive here, background in the baseline
    removed: int
    switched: int
    switches: list[Switch]  # the first few
    anchors_comparable: bool


@dataclass
class Comparison:
    mode: str  # "recipes" | "bundles"
    columns: list[Column]
    terms: list[str]  # logged terms, union in column order
    extra_terms: list[str]
    deltas: list[dict[str, TermDelta]]  # per column, logged and extra terms, plus "total" and "objective"
    assignment: list[AssignmentDiff]  # per column after the first
    gts: list[GtChange]  # ranked by change of contribution
    hints: list[MagnitudeHint]
    why: list[tuple[str, list[str]]]  # aspect -> one text per column
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def delta(base: float | None, value: float | None) -> TermDelta:
    if base is None or value is None:
        return TermDelta(base, value, None, None)
    d = value - base
    return TermDelta(base, value, d, d / abs(base) if base != 0 else (0.0 if d == 0 else None))


def image_keys(b: Bundle) -> list[int | str]:
    """How images are named and matched: id, else file name, else ``#index``."""
    if not b.images:
        return [f"#{i}" for i in range(b.batch_size)]
    return [i.image_id if i.image_id is not None else i.label for i in b.images]


def gt_key(image_key: int | str, g: GtRow) -> Key:
    return (image_key, "ann", g.ann_id) if g.ann_id is not None else (image_key, "#", g.gt_index)


def _ident(key: Key) -> str:
    return f"ann {key[2]}" if key[1] == "ann" else f"#{key[2]}"


def compare_recipes(
    bundle: Bundle, recipes: list[Recipe], gt: str | Path | None = None, names_file: str | Path | None = None
) -> Comparison:
    """Every recipe on the same bundle and ground truth; the first is the baseline."""
    if len(recipes) < 2:
        raise InputError("compare needs at least two recipes (-r A -r B) for one bundle, or two bundles")
    cols = [Column(_label(r, recipes), _run(bundle, gt, r, i, names_file)) for i, r in enumerate(recipes)]
    return _build("recipes", cols)


def compare_bundles(
    a: Bundle, b: Bundle, recipe: Recipe, gt: str | Path | None = None, names_file: str | Path | None = None
) -> Comparison:
    """Two bundles of the same images (two checkpoints, two steps) under one recipe."""
    ka, kb = image_keys(a), image_keys(b)
    for src, keys in ((a.source, ka), (b.source, kb)):
        if len(set(keys)) != len(keys):
            raise InputError(f"{src}: two batch elements share an image id; compare matches images by id")
    if set(ka) != set(kb):
        only_a, only_b = [k for k in ka if k not in kb], [k for k in kb if k not in ka]
        unnamed = [x.source for x in (a, b) if not _named(x)]
        hint = f"; {' and '.join(unnamed)} names no images (pass --image-ids)" if len(unnamed) == 1 else ""
        raise InputError(
            f"{a.source} and {b.source} cover different images (only in the first: {_few(only_a)}; only in the "
            f"second: {_few(only_b)}){hint}; compare needs two bundles of the same images"
        )
    cols = [Column(Path(x.source).name, _run(x, gt, recipe, i, names_file)) for i, x in enumerate((a, b))]
    return _build("bundles", cols)


def _named(b: Bundle) -> bool:
    return any(i.image_id is not None or i.file_name for i in b.images)


def _few(items: list, n: int = 5) -> str:
    return ", ".join(str(i) for i in items[:n]) + (", ..." if len(items) > n else "") if items else "none"


def _label(r: Recipe, recipes: list[Recipe]) -> str:
    return r.label if sum(x.label == r.label for x in recipes) == 1 else f"{r.label}@{recipes.index(r)}"


def _run(b: Bundle, gt, recipe: Recipe, i: int, names_file: str | Path | None = None) -> Explanation:
    from yolodbg.errors import YolodbgError

    try:
        return explain(b, gt, recipe, top=0, names_file=names_file)
    except YolodbgError as e:
        raise type(e)(f"compare column {chr(65 + i)} ({recipe.label}): {e}") from None


def _build(mode: str, cols: list[Column]) -> Comparison:
    terms = _union([list(c.explanation.result.terms) for c in cols])
    extra = _union([list(c.explanation.result.extra_terms) for c in cols])
    deltas = [_term_deltas(cols[0], c, terms + extra) for c in cols]
    gts, rows_by_col = _gt_changes(cols)
    assignment = [_assignment(cols, i, gts, rows_by_col, mode) for i in range(1, len(cols))]
    cmp = Comparison(
        mode, cols, terms, extra, deltas, assignment, gts, magnitude_hints(cols, deltas), why_rows(cols)
    )
    for c in cols:
        ex = c.explanation
        cmp.violations += [f"{c.label}: {v}" for v in ex.breakdown.violations]
        cmp.warnings += [f"{c.label}: {w}" for w in ex.result.warnings]
        if ex.nonfinite is not None:
            cmp.warnings.append(f"{c.label}: non-finite loss: {ex.nonfinite.message}")
    for a in assignment:
        label = cols[a.column].label
        if a.same_params and a.unchanged:
            cmp.notes.append(f"{label}: assignment unchanged: the difference is purely the loss")
        elif a.unchanged and a.anchors_comparable:
            cmp.notes.append(f"{label}: the same positives on this batch, so the difference here is the loss")
        elif a.same_params:
            cmp.warnings.append(
                f"{label}: same assigner parameters but a different assignment (please report)"
            )
    return cmp


def _union(lists: list[list[str]]) -> list[str]:
    out: list[str] = []
    for names in lists:
        out += [n for n in names if n not in out]
    return out


def _term_deltas(base: Column, col: Column, names: list[str]) -> dict[str, TermDelta]:
    rb, rc = base.explanation.result, col.explanation.result
    vb, vc = {**rb.terms, **rb.extra_terms}, {**rc.terms, **rc.extra_terms}
    out = {t: delta(vb.get(t), vc.get(t)) for t in names}
    out["total"] = delta(base.explanation.breakdown.total, col.explanation.breakdown.total)
    out["objective"] = delta(rb.objective, rc.objective)
    return out


def _gt_changes(cols: list[Column]) -> tuple[list[GtChange], list[dict[Key, GtRow]]]:
    rows_by_col = []
    for c in cols:
        keys = image_keys(c.bundle)
        rows_by_col.append({gt_key(keys[g.image_index], g): g for g in c.explanation.breakdown.gts})
    order = _union([list(r) for r in rows_by_col])
    names = cols[0].explanation.class_names
    out = []
    for key in order:
        rows = [r.get(key) for r in rows_by_col]
        ref = next(g for g in rows if g is not None)
        base = rows[0].total if rows[0] is not None else None
        out.append(
            GtChange(
                key=key,
                image=str(key[0]),
                ident=_ident(key),
                cls=ref.cls,
                box_xyxy=ref.box_xyxy,
                num_pos=tuple(g.num_pos if g else None for g in rows),
                totals=tuple(g.total if g else None for g in rows),
                terms=tuple(dict(g.terms) if g else None for g in rows),
                delta=tuple(None if g is None or base is None else g.total - base for g in rows),
                class_label=names.label(ref.cls),
            )
        )
    out.sort(key=lambda c: (-c.change, str(c.key)))
    return out, rows_by_col


def assigner_keys(recipe: Recipe) -> set[str]:
    """Parameters that can change the positives: ``assigner.*`` and the recipe's ``assigner_keys``."""
    return {p.key for p in recipe.PARAMS if p.key.startswith("assigner.") or p.key in recipe.assigner_keys}


def _same_assigner(a: Recipe, b: Recipe) -> bool | None:
    if type(a) is not type(b):
        return None
    return all(a.params[k] == b.params[k] for k in assigner_keys(a))


def _anchor_gt_keys(col: Column, key_id: dict[Key, int], rows: dict[Key, GtRow]) -> torch.Tensor:
    """``(B, N)`` id of each anchor's GT key (-1 background), images in the column's own order."""
    by_row = torch.full((len(col.explanation.targets) + 1,), -1, dtype=torch.long)
    for key, g in rows.items():
        by_row[g.row] = key_id[key]
    goa = col.explanation.result.gt_of_anchor
    return torch.where(goa >= 0, by_row[goa.clamp(min=0)], torch.full_like(goa, -1))


def _assignment(cols: list[Column], i: int, gts: list[GtChange], rows_by_col, mode: str) -> AssignmentDiff:
    base, col = cols[0], cols[i]
    both = [g for g in gts if g.num_pos[0] is not None and g.num_pos[i] is not None]
    pos_changed = [(g, g.num_pos[0], g.num_pos[i]) for g in both if g.num_pos[0] != g.num_pos[i]]
    became = [g for g in both if g.num_pos[0] > 0 and g.num_pos[i] == 0]
    stopped = [g for g in both if g.num_pos[0] == 0 and g.num_pos[i] > 0]
    same = _same_assigner(base.recipe, col.recipe) if mode == "recipes" else None
    key_id = {g.key: k for k, g in enumerate(gts)}
    ra, rb = base.explanation.result, col.explanation.result
    comparable = (
        ra.gt_of_anchor.shape == rb.gt_of_anchor.shape and ra.anchors.level_shapes == rb.anchors.level_shapes
    )
    if not comparable:
        return AssignmentDiff(i, same, not pos_changed, pos_changed, became, stopped, 0, 0, 0, [], False)
    ka = _anchor_gt_keys(base, key_id, rows_by_col[0])
    kb = _anchor_gt_keys(col, key_id, rows_by_col[i])
    keys_a, keys_b = image_keys(base.bundle), image_keys(col.bundle)
    kb = kb[[keys_b.index(k) for k in keys_a]]  # the column's images in the baseline's order
    switched = (ka >= 0) & (kb >= 0) & (ka != kb)
    switches = []
    for img, anc in switched.nonzero().tolist()[:10]:
        switches.append(
            Switch(
                str(keys_a[img]),
                ra.anchors.describe(anc),
                gts[int(ka[img, anc])].ident,
                gts[int(kb[img, anc])].ident,
            )
        )
    return AssignmentDiff(
        column=i,
        same_params=same,
        unchanged=bool(torch.equal(ka, kb)),
        pos_changed=pos_changed,
        became_orphans=became,
        stopped_orphans=stopped,
        added=int(((ka < 0) & (kb >= 0)).sum()),
        removed=int(((ka >= 0) & (kb < 0)).sum()),
        switched=int(switched.sum()),
        switches=switches,
        anchors_comparable=True,
    )
