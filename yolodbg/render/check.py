"""``yolodbg check`` in words: what drifted, like a diff, the largest changes first and at most ``top`` per kind.

Plain text (check runs in CI logs): each change on its own line, a GT's moved terms indented
under it, lines wrapped at spaces to the width (a number or an anchor list is never cut).
"""

from __future__ import annotations

import textwrap
from typing import Any

from yolodbg.snapshot import Drift

INDENT = "    "


def _wrap(text: str, width: int | None, indent: str = "  ", more: str = INDENT + "  ") -> list[str]:
    if width is None:
        return [indent + text]
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=more,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def _rel(rel: float | None) -> str:
    return "new" if rel is None else f"{rel:+.2%}"


def _gt_lines(g: dict[str, Any], width: int | None) -> list[str]:
    """One GT: who and what (positives), then each moved term on its own line."""
    moved = g.get("terms_moved")
    if not moved:  # positives changed: the change says how
        return _wrap(f"{g['recipe']}: {g['gt']}: {g['change']}", width)
    out = _wrap(f"{g['recipe']}: {g['gt']}", width)
    for t in moved:
        new = "missing" if t["new"] is None else f"{t['new']:.6g}"
        out += _wrap(f"{t['term']} {t['old']:.6g} → {new} ({_rel(t['rel'])})", width, INDENT, INDENT + "  ")
    if g.get("normaliser_only"):
        out += _wrap("moved only with the batch-wide normaliser", width, INDENT, INDENT)
    return out


def _term_line(t: dict[str, Any]) -> str:
    return f"{t['recipe']}: term {t['term']} moved {t['old']:.9g} → {t['new']:.9g} ({t['abs']:+.3g}, {t['rel']:+.3%})"


def _section(title: str, items: list, lines_of, top: int, width: int | None) -> list[str]:
    """A kind of change: its count, its first ``top`` items, and how many more there are."""
    if not items:
        return []
    out = [f"{title} ({len(items)}):"]
    for item in items[:top]:
        out += lines_of(item)
    if len(items) > top:
        out += _wrap(f"and {len(items) - top} more (raise --top, or see them all with --json)", width)
    return out


def drift_report(
    drift: Drift, snapshot: str, rtol: float, atol: float, top: int, width: int | None
) -> list[str]:
    """The lines ``check`` prints when numbers drifted (``width`` None: no wrapping, for --wide)."""
    counts = [
        f"{n} {what}{'s' * (n != 1)}"
        for n, what in (
            (len(drift.structure), "added or missing item"),
            (len(drift.params), "parameter"),
            (len(drift.terms), "term"),
            (len(drift.gts), "GT"),
        )
        if n
    ]
    head = f"DRIFT in {snapshot}: {', '.join(counts)} changed (rtol {rtol:g}, atol {atol:g})"
    out = _wrap(head, width, "", "  ")
    out += _section(
        "recipes and GTs added or missing", drift.structure, lambda x: _wrap(x, width), top, width
    )
    out += _section("parameters", drift.params, lambda x: _wrap(x, width), top, width)
    out += _section("terms", drift.terms, lambda t: _wrap(_term_line(t), width), top, width)
    out += _section("GTs, largest change first", drift.gts, lambda g: _gt_lines(g, width), top, width)
    return out
