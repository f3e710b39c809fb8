"""The trainer's logged loss items beside the replay: the proof a bundle replays its own step.

``yolodbg capture`` (and :func:`yolodbg.capture.save_batch`) record the criterion's ``loss_items``
in ``meta["loss_items"]`` as ``{name: float}`` with the trainer's names (``box_loss``,
``cls_loss``, ``dfl_loss`` for Ultralytics). ``explain`` pairs each with the replayed term of
the same name (the ``_loss`` suffix dropped; ``dfl`` and ``l1`` stand for each other, as
end-to-end models log their L1 term in the DFL slot) and fails when any pair differs by more than
:data:`RTOL` relative. A variant recipe (``-r name:key=value``) is expected to differ: its rows
are shown but not checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from yolodbg.errors import BundleError

RTOL = 1e-5  # float32 sums in another order stay far below; a different loss does not
ALIASES = {"dfl": "l1", "l1": "dfl"}


@dataclass(frozen=True)
class LoggedRow:
    """One logged item and the replayed term it was paired with (``term`` None: no such term)."""

    name: str
    term: str | None
    logged: float
    replay: float | None

    @property
    def rel_diff(self) -> float | None:
        if self.replay is None:
            return None
        if self.replay == self.logged:
            return 0.0
        scale = max(abs(self.logged), abs(self.replay))
        return abs(self.replay - self.logged) / scale if scale > 0 else math.inf

    @property
    def agrees(self) -> bool:
        d = self.rel_diff
        return d is not None and d <= RTOL


@dataclass(frozen=True)
class LoggedComparison:
    rows: tuple[LoggedRow, ...]
    checked: bool  # False for a variant recipe: the rows are informative only
    recipe: str

    @property
    def mismatches(self) -> tuple[LoggedRow, ...]:
        """Paired rows that differ beyond :data:`RTOL` (unpaired ones are listed, not counted)."""
        return tuple(r for r in self.rows if r.term is not None and not r.agrees)

    @property
    def failed(self) -> bool:
        return self.checked and bool(self.mismatches)

    def message(self) -> str:
        """One line for stderr naming every item that differs."""
        parts = [
            f"{r.name} logged {r.logged:.9g}, replayed {r.replay:.9g} (rel {r.rel_diff:.2e})"
            for r in self.mismatches
        ]
        return (
            f"the replay ({self.recipe}) differs from the trainer's logged loss_items beyond rel {RTOL:g}: "
            + "; ".join(parts)
            + " — the bundle is not replayed as it was trained (another recipe, class weights or version?)"
        )

    def doc(self) -> dict[str, Any]:
        return {
            "rtol": RTOL,
            "checked": self.checked,
            "agree": not self.mismatches,
            "items": [
                {
                    "name": r.name,
                    "term": r.term,
                    "logged": r.logged,
                    "replay": r.replay,
                    "rel_diff": r.rel_diff,
                }
                for r in self.rows
            ],
        }


def logged_items(meta: dict[str, Any], source: str) -> dict[str, float] | None:
    """``meta["loss_items"]`` as ``{name: float}`` (None when absent); a malformed one is a :class:`BundleError`."""
    raw = meta.get("loss_items")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise BundleError(
            f"{source}: meta.loss_items is {type(raw).__name__}; expected {{name: value}} as the trainer "
            "logged it, e.g. {'box_loss': 1.3}, or leave it out"
        )
    out = {}
    for k, v in raw.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise BundleError(
                f"{source}: meta.loss_items[{k!r}] is {v!r}; expected a number, or leave the item out"
            ) from None
    return out


def _term_for(name: str, terms: dict[str, float]) -> str | None:
    base = name[: -len("_loss")] if name.endswith("_loss") else name
    for key in (name, base, ALIASES.get(base)):
        if key is not None and key in terms:
            return key
    return None


def compare(
    meta: dict[str, Any], terms: dict[str, float], recipe: Any, source: str
) -> LoggedComparison | None:
    """Pair the bundle's logged items with the replayed ``terms`` (None when nothing was logged)."""
    items = logged_items(meta, source)
    if items is None:
        return None
    rows = []
    for name, value in items.items():
        term = _term_for(name, terms)
        rows.append(LoggedRow(name, term, value, None if term is None else float(terms[term])))
    return LoggedComparison(tuple(rows), checked=not recipe.changed(), recipe=recipe.spec())
