"""``yolodbg audit``: suspected label errors ranked from the evidence behind the loss.

``evidence`` (the map: one replayed bundle -> evidence per GT and candidate issues), ``scoring``
(one calibrated scale for the five issue types), ``merge`` (the reduce: checkpoints, ranking,
image scores), ``suggest`` (a proposed corrected COCO json), ``run`` (the map over files on the
scan's machinery). This ``__init__`` imports nothing heavy; :func:`audit` is the library entry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


def audit(
    paths: Sequence[str | os.PathLike],
    gt: str | os.PathLike,
    recipe: str | None = None,
    workers: int = 1,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Audit the labels ``gt`` (a COCO json) with the bundles at ``paths`` (files, folders, globs):
    the ``yolodbg.audit/1`` document ``yolodbg audit --json`` writes."""
    from yolodbg.audit.merge import AuditAggregate
    from yolodbg.audit.run import AuditJob, drive
    from yolodbg.class_names import ClassNames
    from yolodbg.documents.common import versions
    from yolodbg.groundtruth import load_coco
    from yolodbg.recipes import get_recipe
    from yolodbg.scan.run import Failed, auto_workers, expand_all

    if recipe:
        get_recipe(recipe)
    load_coco(gt)
    files = expand_all(paths)
    agg = AuditAggregate()
    class_names = ClassNames(None, dict(enumerate(names)), "names") if names else None
    job = AuditJob(gt=str(gt), recipe=recipe, names=class_names)

    def sink(rec) -> None:
        if isinstance(rec, Failed):
            agg.fail(rec.source, rec.message)
        else:
            agg.add(rec)

    agg.interrupted = drive(files, job, sink, auto_workers(workers, len(files)))
    doc = agg.document()
    doc["versions"] = versions()
    return doc
