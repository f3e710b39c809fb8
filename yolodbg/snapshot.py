"""Regression snapshots of loss numbers (docs/design.md, snapshots): write, read, recompute and diff.

A snapshot records the inputs (paths and sha256 digests), every recipe with all its
parameters, the per-term totals, per-image and per-GT terms and each GT's positive anchors.
Files are deterministic — sorted keys, floats written with 9 significant digits (enough to
round-trip float32) — so they diff well in review and two runs give identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolodbg.bundle import Bundle
from yolodbg.documents.snapshot import SCHEMA, RecordedPaths, snapshot_doc
from yolodbg.errors import InputError
from yolodbg.explain import explain
from yolodbg.geometry import LETTERBOX_MODES
from yolodbg.recipes import get_recipe
from yolodbg.recipes.base import Recipe


def digest_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder's ``*.txt`` files (names and contents, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(f for f in p.glob("*.txt") if f.is_file()):  # regular files only: a FIFO blocks
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()
    from yolodbg.paths import regular_file

    regular_file(p, "the ground truth", "pass a COCO json or a YOLO labels folder")  # a FIFO would block
    h.update(p.read_bytes())
    return h.hexdigest()


def make(
    bundle: Bundle,
    gt: str | Path | None,
    recipes: list[Recipe],
    options: dict[str, Any],
    base: Path | None = None,
) -> dict[str, Any]:
    """A snapshot document of ``recipes`` on ``bundle`` (:func:`~yolodbg.documents.snapshot.snapshot_doc`).

    ``base``: the folder the snapshot file goes to. Relative input paths are then recorded
    relative to it (``paths_relative_to: "snapshot"``), so ``check`` finds them from any working
    directory; absolute paths stay absolute.
    """
    explanations = [explain(bundle, gt, r, top=0) for r in recipes]
    gt_sha256 = None if gt is None else digest_path(gt)
    paths = RecordedPaths(
        bundle=_recorded(bundle.source, base),
        gt=None if gt is None else _recorded(str(gt), base),
        relative_to_snapshot=base is not None,
    )
    return snapshot_doc(bundle, paths, gt_sha256, explanations, options)


def _recorded(path: str, base: Path | None) -> str:
    """``path`` as the snapshot records it: relative to ``base`` (POSIX separators) unless absolute."""
    if base is None or Path(path).is_absolute():
        return path
    target, folder = os.path.abspath(path), os.path.abspath(base)
    if os.path.dirname(os.path.commonpath([target, folder])) == os.path.commonpath([target, folder]):
        return target  # nothing in common but the root: a relative path would only climb to it
    return Path(os.path.relpath(target, folder)).as_posix()


def resolve_input(doc: dict[str, Any], snapshot_path: Path, key: str, what: str) -> Path:
    """The file a snapshot recorded under ``inputs[key]``, found from the current directory.

    Snapshots that say ``paths_relative_to: "snapshot"`` are read relative to the snapshot file's
    folder; older ones as written (relative to the working directory), else next to the snapshot.
    """
    record = doc["inputs"].get(key) or {}
    path = record.get("path")
    if not path:
        raise InputError(f"{snapshot_path}: records no {what} path; pass it on the command line")
    p = Path(path)
    if doc["inputs"].get("paths_relative_to") == "snapshot":
        candidates = [p if p.is_absolute() else snapshot_path.parent / p]
    else:
        candidates = [p, snapshot_path.parent / p]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise InputError(
        f"{snapshot_path}: its {what} {path} is missing (looked for {candidates[0]}); pass the file on the "
        "command line"
    )


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a snapshot; a damaged file is an :class:`InputError` naming what is wrong.

    Hand edits that would let ``check`` pass without comparing anything are refused too: a
    recipe whose ``terms`` were emptied, terms that are not numbers, GTs without positives.
    """
    from yolodbg.paths import SNAPSHOT_LIMIT, regular_file

    p = Path(path)
    fix = f"pass a snapshot file written by yolodbg snapshot PREDS -o {p}"
    if not p.exists() and not p.is_symlink():
        raise InputError(f"{p}: no such snapshot; write one with yolodbg snapshot PREDS -o {p}")
    regular_file(p, "the snapshot", fix, limit=SNAPSHOT_LIMIT)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(
            f"{p}: not a valid snapshot (JSON error at line {getattr(e, 'lineno', '?')}: {getattr(e, 'msg', e)}); "
            "the file is truncated or was edited by hand — rewrite it with yolodbg snapshot --update"
        ) from None
    except RecursionError:
        raise InputError(
            f"{p}: not a valid snapshot (JSON nested too deeply); rewrite it with yolodbg snapshot --update"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"{p}: schema is {got!r}, expected {SCHEMA!r}; not a yolodbg snapshot")
    _check_inputs(doc, p)
    _require(doc, p, "recipes", list)
    if not doc["recipes"]:
        raise InputError(f"{p}: recipes is empty; rewrite the snapshot with yolodbg snapshot --update")
    for i, rec in enumerate(doc["recipes"]):
        _check_record(rec, p, f"recipes[{i}].")
    return doc


_OPTION_TYPES = {"head": str, "imgsz": str, "strides": str, "nc": int, "image_ids": str, "letterbox": str}


def _check_inputs(doc: dict, p: Path) -> None:
    _require(doc, p, "inputs", dict)
    inputs = doc["inputs"]
    _require(inputs, p, "bundle", dict, "inputs.")
    for key in ("path", "sha256"):
        _optional(inputs["bundle"], p, key, str, "inputs.bundle.")
    if inputs.get("gt") is not None:
        _require(inputs, p, "gt", dict, "inputs.")
        for key in ("path", "sha256"):
            _optional(inputs["gt"], p, key, str, "inputs.gt.")
    _optional(inputs, p, "options", dict, "inputs.")
    if inputs.get("paths_relative_to") not in (None, "snapshot"):
        raise InputError(
            f'{p}: inputs.paths_relative_to is {inputs["paths_relative_to"]!r}; expected "snapshot" — '
            "rewrite with yolodbg snapshot --update"
        )
    for key, value in (inputs.get("options") or {}).items():
        typ = _OPTION_TYPES.get(key)
        if typ is None or not isinstance(value, typ) or isinstance(value, bool):
            raise InputError(
                f"{p}: inputs.options.{key} is {value!r}; expected one of {', '.join(_OPTION_TYPES)} as the "
                "command line wrote it — rewrite the snapshot with yolodbg snapshot --update"
            )
        _check_option_value(key, value, p)


def _check_option_value(key: str, value: Any, p: Path) -> None:
    """A recorded ``--imgsz``/``--strides``/``--nc`` goes through the option's own parser, naming the snapshot."""
    import click

    from yolodbg import option_values

    try:
        if key == "imgsz":
            option_values.imgsz(value)
        elif key == "strides":
            option_values.number_list(value, "--strides")
    except click.BadParameter as e:
        raise InputError(
            f"{p}: inputs.options.{key} is {value!r}: {e.message}; rewrite with yolodbg snapshot --update"
        ) from None
    if key == "letterbox" and value not in LETTERBOX_MODES:
        raise InputError(
            f"{p}: inputs.options.letterbox is {value!r}; expected one of {', '.join(LETTERBOX_MODES)} — "
            "rewrite with yolodbg snapshot --update"
        )
    if key == "nc" and value < 1:
        raise InputError(
            f"{p}: inputs.options.nc is {value}; expected an integer ≥ 1 — rewrite with yolodbg snapshot --update"
        )


def _check_record(rec: Any, p: Path, where: str) -> None:
    if not isinstance(rec, dict):
        raise InputError(f"{p}: {where[:-1]} is not an object; rewrite with yolodbg snapshot --update")
    for key, typ in (
        ("spec", str),
        ("name", str),
        ("params", dict),
        ("terms", dict),
        ("gts", list),
        ("images", list),
        ("objective", (int, float)),
    ):
        _require(rec, p, key, typ, where)
    if not rec["terms"]:
        raise InputError(
            f"{p}: {where}terms is empty, so nothing would be compared; rewrite the snapshot with yolodbg snapshot --update"
        )
    _check_terms(rec["terms"], p, f"{where}terms")
    _optional(rec, p, "extra_terms", dict, where)
    _check_terms(rec.get("extra_terms") or {}, p, f"{where}extra_terms")
    for j, im in enumerate(rec["images"]):
        if not isinstance(im, dict) or not _is_int(im.get("index")):
            raise InputError(f"{p}: {where}images[{j}].index missing; rewrite with yolodbg snapshot --update")
    for j, g in enumerate(rec["gts"]):
        for key in ("image_index", "gt_index", "positives", "terms"):
            if not isinstance(g, dict) or key not in g:
                raise InputError(
                    f"{p}: {where}gts[{j}].{key} missing; rewrite with yolodbg snapshot --update"
                )
        for key in ("image_index", "gt_index"):
            if not _is_int(g[key]):
                raise InputError(
                    f"{p}: {where}gts[{j}].{key} is {g[key]!r}; expected an integer (rewrite with yolodbg snapshot --update)"
                )
        if not isinstance(g["positives"], list) or not all(_is_int(a) for a in g["positives"]):
            raise InputError(
                f"{p}: {where}gts[{j}].positives is not a list of anchor indices; rewrite with yolodbg snapshot --update"
            )
        if not isinstance(g["terms"], dict):
            raise InputError(
                f"{p}: {where}gts[{j}].terms is not an object; rewrite with yolodbg snapshot --update"
            )
        _check_terms(g["terms"], p, f"{where}gts[{j}].terms")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_terms(terms: dict, p: Path, where: str) -> None:
    """Term values are finite numbers, or null where the loss itself was not finite."""
    for name, value in terms.items():
        ok = value is None or (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
        if not ok:
            raise InputError(
                f"{p}: {where}.{name} is {value!r}; expected a number — rewrite with yolodbg snapshot --update"
            )


def _require(d: dict, p: Path, key: str, typ, prefix: str = "") -> None:
    if not isinstance(d.get(key), typ) or isinstance(d.get(key), bool):
        raise InputError(
            f"{p}: {prefix}{key} is missing or malformed; rewrite the snapshot with yolodbg snapshot --update"
        )


def _optional(d: dict, p: Path, key: str, typ, prefix: str = "") -> None:
    if d.get(key) is not None:
        _require(d, p, key, typ, prefix)


@dataclass
class Drift:
    """What moved between a snapshot and a recomputation (empty lists = no drift)."""

    params: list[str] = field(default_factory=list)
    terms: list[dict[str, Any]] = field(default_factory=list)  # recipe, term, old, new, abs, rel
    gts: list[dict[str, Any]] = field(default_factory=list)  # recipe, image, ann_id/gt_index, what changed
    structure: list[str] = field(default_factory=list)  # recipes/GTs added or missing

    @property
    def drifted(self) -> bool:
        return bool(self.params or self.terms or self.gts or self.structure)

    def lines(self) -> list[str]:
        out = list(self.structure) + list(self.params)
        for t in self.terms:
            out.append(
                f"{t['recipe']}: term {t['term']} moved {t['old']:.9g} → {t['new']:.9g} "
                f"({t['abs']:+.3g}, {t['rel']:+.3%})"
            )
        for g in self.gts:
            out.append(f"{g['recipe']}: {g['gt']}: {g['change']}")
        return out


def _rel(old: float | None, new: float | None) -> float:
    if old is None or new is None:
        return math.inf
    return (new - old) / abs(old) if old else (math.inf if new else 0.0)


def _fmt(x: float | None) -> str:
    return "missing" if x is None else f"{x:.6g}"


def _close(a: float | None, b: float | None, rtol: float, atol: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= atol + rtol * abs(b)


def _gt_name(g: dict, labels: dict[int, str]) -> str:
    img = labels.get(g["image_index"], f"#{g['image_index']}")
    who = f"ann {g['ann_id']}" if g.get("ann_id") is not None else f"gt {g['gt_index']}"
    return f"image {img} {who}"


def diff(old: dict[str, Any], new: dict[str, Any], rtol: float, atol: float) -> Drift:
    """Compare two snapshot documents recipe by recipe."""
    drift = Drift()
    new_by_spec = {r["spec"]: r for r in new["recipes"]}
    new_by_name = {}
    for r in new["recipes"]:
        new_by_name.setdefault(r["name"], []).append(r)
    for rec in old["recipes"]:
        cur = new_by_spec.get(rec["spec"])
        if cur is None and len(new_by_name.get(rec["name"], [])) == 1:
            cur = new_by_name[rec["name"]][0]  # recomputed with other parameters (check -r)
        if cur is None:
            drift.structure.append(f"recipe {rec['spec']} is in the snapshot but was not recomputed")
            continue
        name = rec["spec"]
        for key in sorted(set(rec["params"]) | set(cur["params"])):
            if key not in rec["params"] and cur["params"].get(key) is None:
                continue  # a parameter newer than the snapshot, left at auto: the numbers say whether it matters
            a, b = rec["params"].get(key, "<absent>"), cur["params"].get(key, "<absent>")
            if a != b:
                drift.params.append(f"{name}: parameter {key} changed: snapshot {a!r}, now {b!r}")
        all_old = {**rec["terms"], **rec.get("extra_terms", {}), "objective": rec["objective"]}
        all_new = {**cur["terms"], **cur.get("extra_terms", {}), "objective": cur["objective"]}
        for term in sorted(set(all_new) - set(all_old)):
            drift.structure.append(
                f"{name}: term {term} is not in the snapshot (hand-edited? rewrite with yolodbg snapshot --update)"
            )
        for term in all_old:
            a, b = all_old[term], all_new.get(term)
            if not _close(b, a, rtol, atol):
                if a is None or b is None:
                    drift.structure.append(f"{name}: term {term} is {a} in the snapshot, {b} now")
                    continue
                drift.terms.append(
                    {
                        "recipe": name,
                        "term": term,
                        "old": a,
                        "new": b,
                        "abs": b - a,
                        "rel": (b - a) / abs(a) if a else math.inf,
                    }
                )
        labels = {
            im["index"]: str(im.get("image_id") if im.get("image_id") is not None else f"#{im['index']}")
            for im in rec["images"]
        }
        _diff_gts(drift, name, rec["gts"], cur["gts"], labels, rtol, atol)
    # the GTs that moved most first (a local change, one box, stands out from the batch-wide normaliser's
    # ripple), then in recipe order: the top of the list is what a reviewer should look at
    order = {r["spec"]: i for i, r in enumerate(old["recipes"])}
    drift.gts.sort(key=lambda d: (-d.get("score", math.inf), order.get(d["recipe"], len(order))))
    return drift


def _common_ratios(old: list, new_by: dict, key) -> dict[str, float]:
    """Per term, the median new/old ratio over GTs: the batch-wide normaliser's share of any change."""
    ratios: dict[str, list[float]] = {}
    for g in old:
        cur = new_by.get(key(g))
        for t, a in g["terms"].items():
            b = cur["terms"].get(t) if cur else None
            if a and b is not None and a > 0:
                ratios.setdefault(t, []).append(b / a)
    return {t: sorted(r)[len(r) // 2] for t, r in ratios.items()}


def _diff_gts(drift: Drift, name: str, old: list, new: list, labels: dict, rtol: float, atol: float) -> None:
    key = lambda g: (g["image_index"], g["gt_index"])  # noqa: E731
    new_by = {key(g): g for g in new}
    common = _common_ratios(old, new_by, key)
    for g in old:
        cur = new_by.pop(key(g), None)
        who = _gt_name(g, labels)
        if cur is None:
            drift.structure.append(f"{name}: {who} is in the snapshot but not in the ground truth now")
            continue
        gained = sorted(set(cur["positives"]) - set(g["positives"]))
        lost = sorted(set(g["positives"]) - set(cur["positives"]))
        if gained or lost:
            drift.gts.append(
                {
                    "recipe": name,
                    "gt": who,
                    "score": math.inf,
                    "change": f"positives {len(g['positives'])} → {len(cur['positives'])}"
                    + (f", gained anchors {gained[:8]}" if gained else "")
                    + (f", lost anchors {lost[:8]}" if lost else ""),
                }
            )
        missing = sorted(set(cur["terms"]) - set(g["terms"]))
        if missing:
            drift.structure.append(f"{name}: {who}: term(s) {', '.join(missing)} not in the snapshot")
        moved = [t for t in g["terms"] if not _close(cur["terms"].get(t), g["terms"][t], rtol, atol)]
        if moved:
            drift.gts.append(_moved_gt(name, who, g, cur, moved, common, rtol))
    for g in new_by.values():
        drift.structure.append(f"{name}: {_gt_name(g, labels)} is new (not in the snapshot)")


def _moved_gt(name: str, who: str, g: dict, cur: dict, moved: list[str], common: dict, rtol: float) -> dict:
    """A GT whose terms moved: how far each moved, and whether it moved only with the normaliser.

    ``common[t]`` is the median new/old ratio of term ``t`` over all GTs: a batch-wide normaliser
    (TAL's target-score sum, say) scales every GT by it. The GT is labelled "moved only with the
    normaliser" when that ratio itself moved (beyond the tolerance) and the GT followed it; a GT
    that moved while the median stayed put moved on its own, however little.
    """
    rels = {t: _rel(g["terms"][t], cur["terms"].get(t)) for t in moved}
    tol = max(10 * rtol, 1e-6)
    own = {
        t: abs((1 + rels[t]) / common.get(t, 1.0) - 1) if math.isfinite(rels[t]) else math.inf for t in moved
    }
    normaliser_moved = all(abs(common.get(t, 1.0) - 1) > tol for t in moved)
    normaliser_only = normaliser_moved and max(own.values()) <= tol
    parts = ", ".join(
        f"{t} {g['terms'][t]:.6g} → {_fmt(cur['terms'].get(t))} ({rels[t]:+.2%})" for t in moved
    )
    if normaliser_only:
        parts += " — only the batch-wide normaliser moved"
    return {
        "recipe": name,
        "gt": who,
        "change": parts,
        "score": max(own.values()),
        "normaliser_only": normaliser_only,
        "terms_moved": [
            {
                "term": t,
                "old": g["terms"][t],
                "new": cur["terms"].get(t),
                "rel": rels[t] if math.isfinite(rels[t]) else None,
            }
            for t in moved
        ],
    }


def recipes_of(doc: dict[str, Any]) -> list[Recipe]:
    """Rebuild the snapshot's recipes from their specs (with today's defaults for unnamed params)."""
    return [get_recipe(r["spec"]) for r in doc["recipes"]]
