"""The map of ``audit`` over files, on the scan's machinery: the one place ``audit`` couples to ``scan/``.

``scan``'s pool (:mod:`yolodbg.scan.run`) maps its own per-bundle function; ``audit`` maps
:func:`process` instead, with the same rules, reusing the public pieces: file expansion, worker
count, one torch thread per bundle (:func:`~yolodbg.scan.run.bundle_threads`), the tuned heap,
worker set-up, and for ``--ray`` the connection of :class:`~yolodbg.scan.ray_pool.RayPool`.
Records come back in file order with at most ``2 × workers`` bundles in flight; the first Ctrl-C
finishes the bundle at hand and returns what was done, a second one stops at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yolodbg.errors import InputError
from yolodbg.scan.run import BUNDLE_THREADS, Failed, allocator, bundle_threads, setup_worker

if TYPE_CHECKING:
    from yolodbg.audit.evidence import BundleAudit
    from yolodbg.scan.ray_pool import RayPool


@dataclass(frozen=True)
class AuditJob:
    """What every bundle goes through (picklable: it travels to the workers)."""

    gt: str
    recipe: str | None = None
    head: str | None = None
    input_size: tuple[int, int] | None = None
    strides: tuple[float, ...] | None = None
    image_ids: tuple[str, ...] | None = None
    nc: int | None = None
    letterbox: str | None = None
    names: tuple[str, ...] | None = None


def process(job: AuditJob, path: str) -> BundleAudit | Failed:
    """Load, replay, gather the evidence (bad input -> :class:`Failed`), on one torch thread."""
    try:
        with bundle_threads():
            return _process(job, path)
    finally:
        allocator.after_bundle()


def _process(job: AuditJob, path: str) -> BundleAudit | Failed:
    import torch

    from yolodbg import bundle as bundle_mod
    from yolodbg.audit.evidence import audit_explanation
    from yolodbg.evaluate.coco import coco_image_ids
    from yolodbg.explain import explain
    from yolodbg.recipes import get_recipe

    try:
        with torch.no_grad():
            b = bundle_mod.load(
                path,
                head=job.head,
                input_size=job.input_size,
                strides=job.strides,
                image_ids=list(job.image_ids) if job.image_ids else None,
                nc=job.nc,
                letterbox=job.letterbox,
                digest=False,
            )
            recipe = get_recipe(job.recipe) if job.recipe else None
            ex = explain(b, job.gt, recipe, top=0, positives=False)
            names = list(job.names) if job.names else _names(ex, job.gt)
            return audit_explanation(ex, names, coco_image_ids(b, job.gt))
    except InputError as e:
        return Failed(str(path), str(e))
    except Exception as e:  # a bug: keep going, say where
        msg = f"internal error: {type(e).__name__}: {e} (a bug in yolodbg; run explain on this file with --debug)"
        return Failed(str(path), msg, internal=True)


def _names(ex, gt: str) -> list[str] | None:
    """Class index -> name from the COCO json's categories (kept per process), else the bundle's names."""
    from yolodbg.groundtruth import load_coco

    ids = ex.targets.category_ids
    if ids:
        try:
            cats = {
                c["id"]: str(c.get("name", c["id"])) for c in load_coco(gt).coco.dataset.get("categories", [])
            }
            return [cats.get(c, str(c)) for c in ids]
        except (InputError, KeyError, TypeError, AttributeError):
            pass
    names = ex.bundle.meta.get("names")
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  (own streams: see scan.run)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    setup_worker(BUNDLE_THREADS)


_ray_ready = False


def _remote_process(job: AuditJob, path: str) -> BundleAudit | Failed:
    global _ray_ready
    if not _ray_ready:
        setup_worker(BUNDLE_THREADS)
        _ray_ready = True
    return process(job, path)


def _local(paths: Sequence[str], job: AuditJob, workers: int) -> Iterator[Any]:
    if workers <= 1:
        for p in paths:
            yield process(job, p)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(workers, mp.get_context(method), initializer=_init_worker)
    todo, pending = iter(paths), deque()
    try:
        for p in todo:
            pending.append(pool.submit(process, job, p))
            if len(pending) >= 2 * workers:
                break
        while pending:
            rec = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(process, job, nxt))
            yield rec
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _ray(paths: Sequence[str], job: AuditJob, workers: int, pool: RayPool) -> Iterator[Any]:
    ray = pool.ray
    remote = ray.remote(num_cpus=1)(_remote_process)
    job_ref = ray.put(job)
    todo, pending = iter(paths), deque()

    def submit() -> None:
        p = next(todo, None)
        if p is not None:
            pending.append((p, remote.remote(job_ref, p)))

    try:
        for _ in range(2 * max(1, workers)):
            submit()
        while pending:
            path, ref = pending.popleft()
            try:
                rec = ray.get(ref)
            except ray.exceptions.RayError as e:
                rec = Failed(path, f"internal error: Ray task failed: {type(e).__name__}", internal=True)
            submit()
            yield rec
    finally:
        for _path, ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)


class _Interrupt:
    """First Ctrl-C: finish the bundle at hand, then stop; a second one stops at once."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self) -> _Interrupt:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def drive(
    paths: Sequence[str | os.PathLike],
    job: AuditJob,
    sink: Callable[[Any], None],
    workers: int = 1,
    ray: RayPool | None = None,
) -> bool:
    """Feed ``sink(record)`` in file order; True when stopped early by Ctrl-C."""
    files = [str(p) for p in paths]
    records = _ray(files, job, workers, ray) if ray is not None else _local(files, job, workers)
    with _Interrupt() as state:
        try:
            for rec in records:
                sink(rec)
                if state.stop:
                    return True
        except KeyboardInterrupt:
            return True
        except Exception:
            if state.stop:
                return True
            raise
        finally:
            records.close()
    return False
