"""``--ray``: the per-bundle map of ``scan``/``trend`` on a Ray cluster (an optional extra).

The map is :func:`yolodbg.scan.run.process` as it runs locally, the reduce stays in this
process, and records come back in file order with a bounded number of bundles in flight, so
a Ray scan prints the same report as a local one. Every node needs yolodbg installed and
must see the bundle and ground-truth paths (a shared filesystem; use absolute paths when the
cluster is not this machine).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from yolodbg.errors import InputError

if TYPE_CHECKING:
    from yolodbg.scan.records import BundleRecord
    from yolodbg.scan.run import Failed, ScanJob

INSTALL_HINT = "pip install 'yolodbg[ray]' (or pip install ray)"

_worker_ready = False


def _remote_process(job: ScanJob, path: str, seq: int) -> BundleRecord | Failed:
    """Runs on a Ray worker: set the process up once (as a local pool worker), then the usual map."""
    global _worker_ready
    from yolodbg.scan.run import BUNDLE_THREADS, process, setup_worker

    if not _worker_ready:
        setup_worker(BUNDLE_THREADS)  # one CPU per task (Ray's default OMP_NUM_THREADS too), as every scan
        _worker_ready = True
    return process(job, path, seq)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RayPool:
    """A connection to Ray: the cluster at ``address`` ('' = Ray's default: ``RAY_ADDRESS``, a
    cluster already running on this machine, else a new local one; 'local' = always a new local
    one; 'auto' = the running cluster; 'ray://host:10001' = Ray Client).

    Connects at construction, so a missing Ray or an unreachable cluster is a one-line error
    before any output file is opened. When Ray was already initialised (a user's own script),
    that session is used and left running on :meth:`close`.
    """

    def __init__(self, address: str = "", *, ray_module: Any = None) -> None:
        if ray_module is None:
            try:
                import ray as ray_module
            except ImportError:
                raise InputError(f"--ray: Ray is not installed; {INSTALL_HINT}") from None
        self.ray = ray_module
        self.owned = not ray_module.is_initialized()
        if self.owned:
            try:
                ray_module.init(
                    address=address or None,
                    include_dashboard=False,
                    log_to_driver=False,  # records carry each bundle's warnings; keep the progress bar clean
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = address or os.environ.get("RAY_ADDRESS") or "the default"
                raise InputError(
                    f"--ray {where}: cannot connect to Ray ({_first_line(e)}); start one with `ray start --head` "
                    "and pass --ray auto, or pass --ray local for a cluster on this machine only"
                ) from None
        self._remote = ray_module.remote(num_cpus=1)(_remote_process)

    def cpus(self) -> int:
        """CPUs of the cluster (the default number of bundles in flight is twice this)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def records(self, paths: Sequence[str | os.PathLike], job: ScanJob, workers: int) -> Iterator[Any]:
        """Yield one record per path, in file order, with at most ``2 × workers`` tasks in flight."""
        from yolodbg.scan.run import Failed

        ray = self.ray
        job_ref = ray.put(job)  # shipped once, not with every task
        todo = iter(enumerate(paths))
        pending: deque[tuple[str, Any]] = deque()

        def submit() -> None:
            nxt = next(todo, None)
            if nxt is not None:
                seq, p = nxt
                pending.append((str(p), self._remote.remote(job_ref, str(p), seq)))

        try:
            for _ in range(2 * max(1, workers)):
                submit()
            while pending:
                path, ref = pending.popleft()
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as e:  # a worker or node died: name the bundle, go on
                    msg = f"internal error: Ray task failed: {type(e).__name__}: {_first_line(e)}"
                    rec = Failed(path, msg, internal=True)
                submit()
                yield rec
        finally:
            for _path, ref in pending:  # stopped early (Ctrl-C, an error): drop what has not run
                with contextlib.suppress(Exception):  # already finished or gone: nothing to cancel
                    ray.cancel(ref)

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
