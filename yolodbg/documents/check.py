"""The ``yolodbg.check/1`` report: a snapshot recomputed, and what drifted beyond the tolerances."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolodbg.snapshot import Drift

SCHEMA = "yolodbg.check/1"


def check_doc(
    snapshot_path: str | Path, drift: Drift, inputs_changed: list[str], rtol: float, atol: float
) -> dict[str, Any]:
    """The report of ``yolodbg check``: ``ok`` when nothing drifted, else the parameters, terms, GTs
    and structure that did; ``inputs_changed`` names inputs whose digest differs from the snapshot's."""
    return {
        "schema": SCHEMA,
        "snapshot": str(snapshot_path),
        "ok": not drift.drifted,
        "inputs_changed": inputs_changed,
        "params": drift.params,
        "terms": drift.terms,
        "gts": drift.gts,
        "structure": drift.structure,
        "rtol": rtol,
        "atol": atol,
    }
