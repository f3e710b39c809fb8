"""The map of ``audit`` over files, on the scan's executor protocol: the one place ``audit`` couples to ``scan/``.

:class:`AuditJob` is a :class:`~yolodbg.scan.executor.Job` over the scan's
:class:`~yolodbg.scan.run.BundleFile` items, so ``audit`` runs wherever ``scan`` runs (this process,
a local pool, a ``RayPool``) through the same :func:`~yolodbg.scan.executor.drive`: records come
back in file order with at most ``2 × workers`` bundles in flight, torch on one thread per bundle;
the first Ctrl-C finishes the bundle at hand and returns what was done, a second one stops at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yolodbg.scan.run import (
    BundleFile,
    BundleJob,
    Failed,
    explain_file,
    guarded,
)
from yolodbg.scan.run import drive as drive_files

if TYPE_CHECKING:
    from yolodbg.audit.evidence import BundleAudit
    from yolodbg.class_names import ClassNames
    from yolodbg.scan.executor import Executor


@dataclass(frozen=True)
class AuditJob(BundleJob):
    """What every bundle of an audit goes through: a :class:`~yolodbg.scan.run.BundleJob` whose ``run``
    is :func:`process` (replay, then the evidence per GT)."""

    names: ClassNames | None = None  # --names (else each bundle's COCO categories or meta names)

    def run(self, item: BundleFile) -> BundleAudit | Failed:
        return process(self, item.path)


def process(job: AuditJob, path: str) -> BundleAudit | Failed:
    """Load, replay, gather the evidence (bad input -> :class:`Failed`), on one torch thread."""

    def evidence() -> BundleAudit:
        from yolodbg.audit.evidence import audit_explanation
        from yolodbg.evaluate.coco import coco_image_ids

        ex = explain_file(job, path, top=0)
        names = job.names if job.names is not None else _names(ex, job.gt)
        return audit_explanation(ex, names, coco_image_ids(ex.bundle, job.gt))

    return guarded(path, evidence)


def _names(ex, gt: str) -> ClassNames:
    """How this bundle's classes are written: the COCO json's categories, else the bundle's names."""
    from yolodbg.class_names import resolve

    return resolve(gt=gt, category_ids=ex.targets.category_ids, meta=ex.bundle.meta)


def drive(
    paths: Sequence[str | os.PathLike],
    job: AuditJob,
    sink: Callable[[BundleAudit | Failed], None],
    workers: int = 1,
    executor: Executor | None = None,
) -> bool:
    """Feed ``sink(record)`` in file order; True when stopped early by Ctrl-C.

    ``executor`` runs the map (a ``RayPool`` for ``--ray``; default: the scan's local executor,
    this process for one worker, else a process pool of ``workers``)."""
    return drive_files(paths, job, lambda _i, rec: sink(rec), workers, executor)
