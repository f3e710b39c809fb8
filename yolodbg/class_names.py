"""How a class is written in every report: ``square (2)``, its name and its id, or the id alone.

One place decides, so the console tables, the JSON's ``class_name``, the overlays and the HTML
report never disagree. The id is the dataset's: the COCO category id when the ground truth (or
the bundle) maps class indices to categories, else the class index. Names come from, in order:

1. ``--names FILE``: a ``data.yaml`` with ``names:`` (a list, or a dict index -> name) or a text
   file with one name per line; then the id shown is the class index, the file's own numbering;
2. the COCO json's ``categories`` (names by category id);
3. the bundle's ``meta["names"]`` (a list, or a dict index -> name).

Without any of them a class is its id alone. This module imports neither torch nor rich: the
help and usage errors of every command stay fast.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolodbg.errors import InputError

__all__ = ["ClassNames", "for_scan", "load_names_file", "resolve", "scan_doc_names"]


@dataclass(frozen=True)
class ClassNames:
    """Class index -> the id a user knows it by and its name (``None`` when unknown)."""

    ids: Mapping[int, int] | None = None  # class index -> displayed id (category id); None: the index itself
    names: Mapping[int, str] | None = None  # class index -> name
    source: str = ""  # where the names came from ("" when there are none)

    def id_of(self, cls: int) -> int:
        found = None if self.ids is None else self.ids.get(cls)
        return cls if found is None else found

    def name_of(self, cls: int) -> str | None:
        return None if self.names is None else self.names.get(cls)

    def label(self, cls: int) -> str:
        """``square (2)`` with a name, else ``2`` (the id)."""
        name = self.name_of(cls)
        return str(self.id_of(cls)) if name is None else f"{name} ({self.id_of(cls)})"

    def labels(self, nc: int) -> list[str]:
        """:meth:`label` of class indices 0..nc-1 (what the overlays and the HTML report index by class)."""
        return [self.label(c) for c in range(nc)]


def resolve(
    *,
    names_file: str | Path | None = None,
    gt: str | Path | None = None,
    category_ids: Sequence[int] | Mapping[int, int | None] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> ClassNames:
    """The class names of a run: ``--names`` first, then the COCO json at ``gt``, then ``meta["names"]``.

    ``category_ids`` maps class index -> COCO category id (the targets' or the bundle's): a list by
    class index, or a mapping (a scan knows the category of the classes it met).
    """
    if isinstance(category_ids, Mapping):
        cats = {int(k): int(v) for k, v in category_ids.items() if v is not None} or None
    else:
        cats = dict(enumerate(category_ids)) if category_ids else None
    if names_file is not None:
        return ClassNames(None, load_names_file(names_file), f"--names {names_file}")
    coco = _coco_names(gt, cats) if cats is not None else None
    if coco is not None:
        return ClassNames(cats, coco, f"categories of {Path(str(gt)).name}")
    listed = _as_index_map((meta or {}).get("names"))
    if listed is not None:
        return ClassNames(cats, listed, "the bundle's meta.names")
    return ClassNames(cats, None, "")


def for_scan(
    doc: Mapping[str, Any], names_file: str | Path | None, gt: str | Path | None
) -> dict[str, Any] | None:
    """The ``class_names`` of a ``yolodbg.scan/1`` document, or None when no names are known.

    ``{"source": ..., "id": "category_id" | "class", "by_class": {"0": "circle", ...}}``: the names by
    class index, and which number a report writes beside them (the category id of ``classes[]``, or
    the class index for ``--names``). The categories come from the document's ``classes[]``.
    """
    cats = {r["class"]: r.get("category_id") for r in doc.get("classes", [])}
    names = resolve(names_file=names_file, gt=gt, category_ids=cats)
    if names.names is None:
        return None
    return {
        "source": names.source,
        "id": "class" if names_file is not None else "category_id",
        "by_class": {str(k): v for k, v in sorted(names.names.items())},
    }


def scan_doc_names(doc: Mapping[str, Any]) -> ClassNames:
    """How a scan report writes classes: its ``class_names`` beside its classes' category ids (or indices)."""
    raw = doc.get("class_names")
    raw = raw if isinstance(raw, Mapping) else {}
    cats = {r["class"]: r["category_id"] for r in doc.get("classes", []) if r.get("category_id") is not None}
    by_class = raw.get("by_class")
    names = {int(k): str(v) for k, v in by_class.items()} if isinstance(by_class, Mapping) else None
    ids = None if raw.get("id") == "class" or not cats else cats
    return ClassNames(ids, names, str(raw.get("source", "")))


def _coco_names(gt: str | Path | None, cats: Mapping[int, int]) -> dict[int, str] | None:
    """Class index -> category name from a COCO json's ``categories`` (None when ``gt`` is not one)."""
    if gt is None or not Path(gt).is_file():
        return None
    st = Path(gt).stat()
    by_id = _category_names(str(gt), st.st_mtime_ns, st.st_size)
    if by_id is None:
        return None  # the ground-truth loader has already reported a malformed json
    found = {i: by_id[c] for i, c in cats.items() if c in by_id}
    return found or None


@functools.lru_cache(maxsize=4)
def _category_names(path: str, _mtime_ns: int, _size: int) -> dict[int, str] | None:
    """Category id -> name of a COCO json, read once per process and version of the file (``audit``
    resolves the names of every bundle)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return {int(c["id"]): str(c["name"]) for c in doc.get("categories", []) if "name" in c}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _as_index_map(value: Any) -> dict[int, str] | None:
    """A ``names`` value (list, or dict with integer keys) as class index -> name; None otherwise."""
    if isinstance(value, (list, tuple)):
        return {i: str(n) for i, n in enumerate(value)}
    if isinstance(value, Mapping):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
    return None


def load_names_file(path: str | Path) -> dict[int, str]:
    """Class index -> name from a ``data.yaml`` (its ``names:`` key) or a text file, one name a line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise InputError(
            f"--names {p}: cannot read it ({reason}); pass a data.yaml or a text file, one class name a line"
        ) from None
    if p.suffix.lower() in (".yaml", ".yml"):
        names = _yaml_names(text)
        if not names:
            raise InputError(
                f"--names {p}: no 'names:' list or mapping found; write e.g. 'names: [circle, square]' "
                "or one '  0: circle' line per class under 'names:'"
            )
        return names
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InputError(
            f"--names {p}: the file is empty; write one class name per line, in class-index order"
        )
    if "" in lines:
        raise InputError(
            f"--names {p}: line {lines.index('') + 1} is empty; write one class name per line, in class-index "
            "order (no blank lines: a line's number is its class index)"
        )
    return dict(enumerate(lines))


_KEY = re.compile(r"^names\s*:\s*(.*?)\s*$")
_ITEM = re.compile(r"^\s*-\s*(.*?)\s*$")
_ENTRY = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")


def _unquote(s: str) -> str:
    s = s.split(" #", 1)[0].strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _yaml_names(text: str) -> dict[int, str] | None:
    """The ``names:`` of a YOLO ``data.yaml``: ``[a, b]``, ``{0: a, 1: b}``, or a block of ``- a`` or
    ``0: a`` lines (the forms Ultralytics and YOLOv5 dataset files use; no full YAML parser needed)."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        m = _KEY.match(line)
        if m is None:
            continue
        inline = _unquote(m.group(1)) if not m.group(1).startswith(("[", "{")) else m.group(1).split(" #")[0]
        if inline.startswith("[") and inline.endswith("]"):
            return {i: _unquote(v) for i, v in enumerate(_split(inline[1:-1]))}
        if inline.startswith("{") and inline.endswith("}"):
            out = {}
            for item in _split(inline[1:-1]):
                k, _, v = item.partition(":")
                if not k.strip().isdigit():
                    return None
                out[int(k)] = _unquote(v)
            return out
        if inline:
            return None
        return _yaml_block(lines[n + 1 :])
    return None


def _yaml_block(lines: list[str]) -> dict[int, str] | None:
    out: dict[int, str] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            break  # the next top-level key
        item, entry = _ITEM.match(line), _ENTRY.match(line)
        if item is not None:
            out[len(out)] = _unquote(item.group(1))
        elif entry is not None:
            out[int(entry.group(1))] = _unquote(entry.group(2))
        else:
            break
    return out or None


def _split(body: str) -> list[str]:
    """Comma-separated items of a flow list or mapping (quotes keep their commas)."""
    items, cur, quote = [], "", ""
    for ch in body:
        if quote:
            cur += ch
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            cur, quote = cur + ch, ch
        elif ch == ",":
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur.strip())
    return items
