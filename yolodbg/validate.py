"""Check a JSON document yolodbg wrote against its contract: the JSON Schema plus the arithmetic.

Every document carries a ``schema`` id (``yolodbg.explain/1``, ``yolodbg.compare/1``, ...). The
matching JSON Schema (draft 2020-12) ships in ``yolodbg/schemas/`` and fixes the structure: the
required fields, their types, the term-name pattern. What a schema cannot say is checked here
in code, because it is what makes a report trustworthy: the per-GT and background parts of every
term add back up to the term (conservation), totals are the sums of their terms, counts agree.
See docs/json.md for the contract in prose and an example.

>>> validate({"schema": "yolodbg.check/1", "snapshot": "s.json", "ok": True, "params": [],
...           "terms": [], "gts": [], "structure": []})
[]
"""

from __future__ import annotations

import itertools
import json
import math
import stat
import sys
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from yolodbg.errors import InputError

RTOL, ATOL = 1e-5, 1e-6  # the tolerance explain checks conservation with (breakdown.CONSERVATION_*)
MAX_PROBLEMS = 50
MAX_BYTES = 1 << 30  # a yolodbg document is MBs at most; refuse to read GBs into memory

SCHEMA_FILES = {
    "yolodbg.explain/1": "explain-1.json",
    "yolodbg.compare/1": "compare-1.json",
    "yolodbg.scan/1": "scan-1.json",
    "yolodbg.trend/1": "trend-1.json",
    "yolodbg.snapshot/1": "snapshot-1.json",
    "yolodbg.check/1": "check-1.json",
    "yolodbg.audit/1": "audit-1.json",
}


class UnknownSchema(InputError):
    """The document names no schema, or one this version of yolodbg does not know (exit 2)."""


@cache
def load_schema(schema_id: str) -> dict[str, Any]:
    """The JSON Schema of ``schema_id`` as shipped in the package."""
    name = SCHEMA_FILES.get(schema_id)
    if name is None:
        raise UnknownSchema(
            f"unknown schema {schema_id!r}; yolodbg {_version()} checks {', '.join(SCHEMA_FILES)} — "
            "validate it with the yolodbg that wrote it"
        )
    return json.loads(resources.files("yolodbg").joinpath("schemas", name).read_text(encoding="utf-8"))


def _version() -> str:
    from yolodbg import __version__

    return __version__


def schema_of(doc: Any) -> str:
    """The document's ``schema`` id; :class:`UnknownSchema` if it has none this version knows."""
    sid = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(sid, str):
        what = "not a JSON object" if not isinstance(doc, dict) else "has no 'schema' field"
        raise UnknownSchema(
            f"the document is {what}, so it is not a yolodbg document; validate what "
            "yolodbg explain/compare/scan/trend --json, snapshot or check --json wrote"
        )
    load_schema(sid)
    return sid


def validate(doc: Any, expect: str | None = None, rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Problems of ``doc`` (empty when it holds to its contract), each naming the field.

    ``expect`` demands one kind of document (e.g. ``"yolodbg.explain/1"``); another id is then a
    problem. An unknown or missing id raises :class:`UnknownSchema` (there is nothing to check against).
    """
    sid = schema_of(doc)
    if expect is not None and sid != expect:
        return [f"schema: is {sid!r}, expected {expect!r}"]
    try:
        structure = [
            f"{where}: not a finite number (JSON has no NaN or Infinity)" for where in _nonfinite(doc)
        ]
        structure += _schema_problems(doc, load_schema(sid))
    except RecursionError:
        raise InputError("the document is nested too deeply to be a yolodbg document") from None
    problems = structure + _recorded_failures(doc)
    problems += _arithmetic(sid, doc, _Tol(rtol, atol), structure_ok=not structure)
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]
    return problems


def read_document(path: str | Path) -> Any:
    """Parse a JSON file (``-`` = stdin); :class:`InputError` naming the file and the fix if it cannot."""
    name = str(path)
    try:
        text = sys.stdin.read() if name == "-" else _read_regular(Path(name))
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text; pass a JSON document written by yolodbg") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e}); check the path") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{name}: not JSON (line {e.lineno}, column {e.colno}: {e.msg}); the file is truncated or is not "
            "a yolodbg document — write it again with --json"
        ) from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply to be a yolodbg document") from None


def _read_regular(p: Path) -> str:
    st = p.stat()
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{p}: is {kind}; pass the JSON file itself (or '-' to read stdin)")
    if st.st_size > MAX_BYTES:
        raise InputError(f"{p}: {st.st_size} bytes is far larger than any yolodbg document; check the path")
    return p.read_text(encoding="utf-8")


def validate_file(path: str | Path, expect: str | None = None) -> tuple[str, list[str]]:
    """``(schema id, problems)`` of a JSON file (``-`` = stdin); unreadable or unknown -> :class:`InputError`."""
    doc = read_document(path)
    try:
        sid = schema_of(doc)
    except UnknownSchema as e:
        raise UnknownSchema(f"{path}: {e}") from None
    return sid, validate(doc, expect)


# ---------------------------------------------------------------------------------------- structure


def _schema_problems(doc: Any, schema: dict[str, Any]) -> list[str]:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [_problem(e) for e in errors]


def _problem(error) -> str:
    """One line per violation: the field's path, then what is wrong with it in a few words."""
    from jsonschema.exceptions import best_match

    if error.validator in ("oneOf", "anyOf"):
        # the value has the type of one form but a wrong part: name that part, not every form
        inner = [e for e in error.context if e.validator != "type" or e.relative_path]
        if inner:
            return _problem(best_match(inner))
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"{_where([*path, missing])}: required field is missing"
    return f"{_where(path)}: {_message(error)}"


def _message(error) -> str:
    """jsonschema's message, shortened where it would print a whole sub-document."""
    if error.validator in ("oneOf", "anyOf"):
        return "is none of the allowed forms (" + ", ".join(_short(s) for s in error.validator_value) + ")"
    if "propertyNames" in error.schema_path:
        return f"key {error.message} (term names are lower-case words, extra terms 'branch.term')"
    msg = error.message
    return msg if len(msg) <= 200 else f"{msg[:120]}... violates {error.validator} {error.validator_value!r}"


def _short(subschema: dict) -> str:
    return str(subschema.get("type", "object"))


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _nonfinite(x: Any, where: str = "") -> Iterator[str]:
    """Paths of NaN/Infinity values (Python's json reads them; JSON and yolodbg's contract do not allow them)."""
    if isinstance(x, float) and not math.isfinite(x):
        yield where or "(document)"
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _nonfinite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _nonfinite(v, f"{where}[{i}]")


# ---------------------------------------------------------------------------------------- arithmetic


def _arithmetic(sid: str, doc: dict, tol: _Tol, structure_ok: bool) -> list[str]:
    """The sums and counts of ``doc``; on a malformed document, as far as its structure allows."""
    if structure_ok:
        return SEMANTIC[sid](doc, tol)
    try:  # a field the arithmetic reads is missing or mistyped: that is reported already
        return SEMANTIC[sid](doc, tol)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError):
        return []


def _recorded_failures(doc: dict) -> list[str]:
    """A document that records a failed check of its own (non-finite loss, broken conservation) is not valid."""
    bad = []
    nonfinite = doc.get("nonfinite")
    if isinstance(nonfinite, dict):  # explain
        bad.append(f"nonfinite: the replayed loss is not finite ({nonfinite.get('message')})")
    elif isinstance(nonfinite, list) and nonfinite:  # scan
        bad.append(
            f"nonfinite: {len(nonfinite)} bundle(s) replayed to a non-finite loss, e.g. {nonfinite[0]}"
        )
    violations = doc.get("violations")
    if isinstance(violations, list) and violations:
        bad.append(f"violations: conservation failed in {len(violations)} place(s), e.g. {violations[0]}")
    return bad


class _Tol:
    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol

    def close(self, got: float, want: float) -> bool:
        return abs(got - want) <= self.atol + self.rtol * abs(want)


def _sum_check(label: str, parts: list[float], want: float, tol: _Tol) -> list[str]:
    got = math.fsum(parts)
    return [] if tol.close(got, want) else [f"{label}: adds up to {got!r}, not {want!r}"]


def _explain(doc: dict, tol: _Tol) -> list[str]:
    bad: list[str] = []
    terms, extra = doc["terms"], doc.get("extra_terms", {})
    bad += _sum_check("total", list(terms.values()), doc["total"], tol)
    gts, bg = doc["gts"], doc["background"]["terms"]
    bad += _conservation(terms, extra, gts, bg, tol)
    for i, g in enumerate(gts):
        if g["image_index"] >= doc["batch_size"]:
            bad.append(f"gts[{i}].image_index: {g['image_index']} is beyond batch_size {doc['batch_size']}")
        if all(t in g["terms"] for t in terms):
            bad += _sum_check(f"gts[{i}].total", [g["terms"][t] for t in terms], g["total"], tol)
    bad += _shares(gts)
    if "num_gt" in doc and doc["num_gt"] != len(gts):
        bad.append(f"num_gt: is {doc['num_gt']}, but gts[] lists {len(gts)}")
    if "num_pos" in doc and doc["num_pos"] != sum(g["num_pos"] for g in gts):
        bad.append(
            f"num_pos: is {doc['num_pos']}, but gts[].num_pos add up to {sum(g['num_pos'] for g in gts)}"
        )
    bad += _parts_add_up("images[{}].terms", [im["terms"] for im in doc["images"]], terms, extra, tol)
    by_level = doc["background"].get("by_level")
    if by_level:
        bad += _parts_add_up("background.by_level[{}].terms", [lv["terms"] for lv in by_level], bg, {}, tol)
    bad += _negative_gts(doc.get("negatives", []), len(gts))
    return bad


def _negative_gts(negatives: list[dict], num_gt: int) -> list[str]:
    """A background anchor names a best GT only when it overlaps one (best IoU > 0), and one that exists."""
    bad = []
    for i, n in enumerate(negatives):
        best, iou = n.get("best_gt"), n.get("best_iou")
        if best is not None and iou is not None and iou <= 0:
            bad.append(
                f"negatives[{i}].best_gt: is {best}, but best_iou is {iou}; an anchor that overlaps no GT has null"
            )
        if best is not None and not 0 <= best < num_gt:
            bad.append(f"negatives[{i}].best_gt: {best} is not a GT row (0..{num_gt - 1})")
        if (best is None) != (n.get("best_gt_index") is None):
            bad.append(f"negatives[{i}].best_gt_index: must be null exactly when best_gt is null")
    return bad


def _conservation(terms: dict, extra: dict, gts: list, bg: dict, tol: _Tol) -> list[str]:
    """Every logged term (and every extra term the breakdown carries) is Σ gts + background."""
    bad = []
    for t, want in [*terms.items(), *((t, v) for t, v in extra.items() if t in bg)]:
        missing = [i for i, g in enumerate(gts) if t not in g["terms"]]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            bad.append(
                f"gts[{missing[0]}].terms: term {t!r} is missing (also in gts{missing[1:5]}{more}); "
                "every key of terms must be in each gts[].terms"
                if len(missing) > 1
                else f"gts[{missing[0]}].terms: term {t!r} is missing; every key of terms must be in each gts[].terms"
            )
            continue
        if t not in bg:
            bad.append(
                f"background.terms: term {t!r} is missing; every key of terms must be in background.terms"
            )
            continue
        got = math.fsum([*(g["terms"][t] for g in gts), bg[t]])
        if not tol.close(got, want):
            where = "terms" if t in terms else "extra_terms"
            bad.append(
                f"{where}.{t}: conservation broken: Σ gts + background = {got!r}, but {where}.{t} = {want!r}"
            )
    return bad


def _parts_add_up(label: str, parts: list[dict], whole: dict, extra: dict, tol: _Tol) -> list[str]:
    """Per-image (or per-level) parts of each term add up to the whole."""
    if not parts:
        return []
    bad = []
    for t, want in [*whole.items(), *extra.items()]:
        if not all(t in p for p in parts):
            if t in whole:
                i = next(i for i, p in enumerate(parts) if t not in p)
                bad.append(f"{label.format(i)}: term {t!r} is missing")
            continue
        bad += _sum_check(f"{label.format('*')}.{t}", [p[t] for p in parts], want, tol)
    return bad


def _shares(gts: list[dict]) -> list[str]:
    bad, total = [], 0.0
    for i, g in enumerate(gts):
        share = g.get("share")
        if share is None:
            continue
        if share < -1e-9 or share > 1 + 1e-9:
            bad.append(f"gts[{i}].share: {share} is outside [0, 1]")
        total += share
    if total > 1 + 1e-6:
        bad.append(f"gts[].share: add up to {total:.6f} > 1")
    return bad


def _compare(doc: dict, tol: _Tol) -> list[str]:
    bad: list[str] = []
    cols = doc["columns"]
    n = len(cols)
    if not 0 <= doc["baseline"] < n:
        bad.append(f"baseline: {doc['baseline']} is not a column index (0..{n - 1})")
    for i, c in enumerate(cols):
        if c["index"] != i:
            bad.append(f"columns[{i}].index: is {c['index']}, expected {i}")
        bad += _sum_check(f"columns[{i}].total", list(c["terms"].values()), c["total"], tol)
        missing = [t for t in doc["term_names"] if t not in c["terms"]]
        if missing:
            bad.append(f"columns[{i}].terms: {missing} of term_names are missing")
    if len(doc["deltas"]) != n:
        bad.append(f"deltas: {len(doc['deltas'])} entries for {n} columns")
    for i, a in enumerate(doc["assignment"]):
        if not 0 <= a["column"] < n:
            bad.append(f"assignment[{i}].column: {a['column']} is not a column index (0..{n - 1})")
    for i, g in enumerate(doc["gts"]):
        for key in ("num_pos", "total", "terms", "delta"):
            if len(g[key]) != n:
                bad.append(f"gts[{i}].{key}: {len(g[key])} values for {n} columns")
    return bad


def _scan(doc: dict, tol: _Tol) -> list[str]:
    bad: list[str] = []
    sums, bg = doc["loss_sum"]["terms"], doc["background"]["terms"]
    bad += _sum_check("loss_sum.total", list(sums.values()), doc["loss_sum"]["total"], tol)
    bad += _sum_check("total", list(doc["terms"].values()), doc["total"], tol)
    if doc["bundles"]:
        for t, v in doc["terms"].items():
            if t in sums and not tol.close(v * doc["bundles"], sums[t]):
                bad.append(
                    f"terms.{t}: {v!r} × {doc['bundles']} bundles is not loss_sum.terms.{t} {sums[t]!r}"
                )
    for group in ("classes", "sizes"):
        rows = doc[group]
        if not rows:
            continue
        for t, want in sums.items():
            parts = [r["terms"].get(t, 0.0) for r in rows] + [bg.get(t, 0.0)]
            got = math.fsum(parts)
            if not tol.close(got, want):
                bad.append(
                    f"loss_sum.terms.{t}: conservation broken: Σ {group}[].terms + background = {got!r}, "
                    f"but loss_sum.terms.{t} = {want!r}"
                )
    if doc["num_gt"] != sum(c["num_gt"] for c in doc["classes"]):
        bad.append(
            f"num_gt: is {doc['num_gt']}, but classes[].num_gt add up to {sum(c['num_gt'] for c in doc['classes'])}"
        )
    return bad


def _snapshot(doc: dict, tol: _Tol) -> list[str]:
    bad: list[str] = []
    for r, rec in enumerate(doc["recipes"]):
        terms = rec["terms"]
        for t, v in terms.items():
            if v is None:
                bad.append(f"recipes[{r}].terms.{t}: is null (a non-finite loss was snapshotted)")
        for kind in ("images", "gts"):
            for i, x in enumerate(rec[kind]):
                missing = [t for t in terms if t not in x["terms"]]
                if missing:
                    bad.append(f"recipes[{r}].{kind}[{i}].terms: term {missing[0]!r} is missing")
        images = rec["images"]
        if images and not bad:
            for t, want in terms.items():
                parts = [im["terms"][t] for im in images]
                if want is not None and all(p is not None for p in parts):
                    bad += _sum_check(f"recipes[{r}].images[*].terms.{t}", parts, want, tol)
    return bad


def _check(doc: dict, tol: _Tol) -> list[str]:
    drifted = bool(doc["params"] or doc["terms"] or doc["gts"] or doc["structure"])
    if doc["ok"] == drifted:
        return [f"ok: is {doc['ok']}, but the report lists {'some' if drifted else 'no'} drift"]
    return []


def _trend(doc: dict, tol: _Tol) -> list[str]:
    n = len(doc["checkpoints"])
    bad = [f"terms.{t}: {len(v)} values for {n} checkpoints" for t, v in doc["terms"].items() if len(v) != n]
    bad += [
        f"series.{k}.values: {len(s['values'])} values for {n} checkpoints"
        for k, s in doc["series"].items()
        if len(s["values"]) != n
    ]
    return bad


def _audit(doc: dict, tol: _Tol) -> list[str]:
    """Issues ranked best first with unique ids, counts that match them, image scores their noisy-or."""
    bad: list[str] = []
    issues = doc["issues"]
    scores = [x["score"] for x in issues]
    if any(a < b for a, b in itertools.pairwise(scores)):
        bad.append("issues: not sorted by score, highest first")
    ids = [x["id"] for x in issues]
    if len(set(ids)) != len(ids):
        bad.append("issues[].id: an id appears twice")
    for t, n in doc["counts"].items():
        got = sum(1 for x in issues if x["type"] == t)
        if got != n:
            bad.append(f"counts.{t}: is {n}, but issues hold {got} of that type")
    per_image: dict[str, list[float]] = {}
    for x in issues:
        per_image.setdefault(str(x["image_id"]), []).append(x["score"])
    seen = set()
    for k, im in enumerate(doc["images"]):
        key = str(im["image_id"])
        seen.add(key)
        mine = per_image.get(key, [])
        if im["issues"] != len(mine):
            bad.append(f"images[{k}].issues: is {im['issues']}, but issues hold {len(mine)} for image {key}")
        want = 1.0 - math.prod(1.0 - s for s in mine)
        if not tol.close(im["score"], want) and abs(im["score"] - want) > 1e-5:
            bad.append(f"images[{k}].score: is {im['score']!r}, not the noisy-or of its issues {want!r}")
    missing = sorted(set(per_image) - seen)
    if missing:
        bad.append(f"images: no entry for image {missing[0]}, which has issues")
    return bad


SEMANTIC: dict[str, Callable[[dict, _Tol], list[str]]] = {
    "yolodbg.audit/1": _audit,
    "yolodbg.explain/1": _explain,
    "yolodbg.compare/1": _compare,
    "yolodbg.scan/1": _scan,
    "yolodbg.trend/1": _trend,
    "yolodbg.snapshot/1": _snapshot,
    "yolodbg.check/1": _check,
}
