"""JSON out: documents serialised (non-finite numbers as null) to stdout or a file, atomically.

The documents themselves are built in :mod:`yolodbg.documents`."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from yolodbg.atomic import atomic_write


def _clean(x: Any) -> Any:
    """Non-finite floats become null (JSON has no NaN); everything else passes through."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def dumps(doc: dict[str, Any], sort_keys: bool = False) -> str:
    """Indented JSON; non-finite floats (an infinite relative change, say) become null."""
    return json.dumps(_clean(doc), indent=2, sort_keys=sort_keys, allow_nan=False, default=_default) + "\n"


def json_line(doc: dict[str, Any]) -> str:
    """One compact JSON line (a ``scan --rows`` record); non-finite floats become null."""
    return json.dumps(_clean(doc), allow_nan=False) + "\n"


def _default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write(doc: dict[str, Any], target: str) -> None:
    """Write a document to a file atomically, or to stdout for ``-``."""
    write_text(dumps(doc), target)


def write_text(text: str, target: str) -> None:
    """Write text to a file atomically (temp file + rename), or to stdout for ``-``."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write(target, lambda f: f.write(text.encode("utf-8")))
