"""``--ray``: an :class:`~yolodbg.scan.executor.Executor` on a Ray cluster (an optional extra).

Each item runs ``job.run(item)`` in a Ray task, exactly as a local worker would; the reduce
stays in the calling process, and results come back in item order with a bounded number of
tasks in flight, so a Ray scan prints the same report as a local one. This module depends only
on the executor protocol (:mod:`yolodbg.scan.executor`), not on what the job does. For ``scan``
and ``trend``, every node needs yolodbg installed and must see the bundle and ground-truth paths
(a shared filesystem; use absolute paths when the cluster is not this machine).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Generator, Iterable
from typing import Any

from yolodbg.errors import InputError
from yolodbg.scan.executor import Item, Job, Result, in_flight

INSTALL_HINT = "pip install 'yolodbg[ray]' (or pip install ray)"

_worker_ready = False
_DONE = object()  # the end of the items (an item itself may be None)


def _remote_run(job: Job[Item, Result], item: Item) -> Result:
    """Runs on a Ray worker: set the process up once (as a local pool worker does), then the job."""
    global _worker_ready

    if not _worker_ready:
        job.setup_worker()
        _worker_ready = True
    return job.run(item)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RayPool:
    """An :class:`~yolodbg.scan.executor.Executor` on Ray, connected to the cluster at ``address``
    ('' = Ray's default: ``RAY_ADDRESS``, a cluster already running on this machine, else a new
    local one; 'local' = always a new local one; 'auto' = the running cluster; 'ray://host:10001'
    = Ray Client).

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
        self._remote = ray_module.remote(num_cpus=1)(_remote_run)

    def cpus(self) -> int:
        """CPUs of the cluster (the default number of bundles in flight is twice this)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def map(
        self, job: Job[Item, Result], items: Iterable[Item], workers: int = 1
    ) -> Generator[Result, None, None]:
        """Yield ``job.run(item)`` per item, in item order, with at most ``2 × workers`` tasks in flight.

        A task Ray loses (its worker or node died) becomes ``job.lost(item, why)``, and the map goes on.
        """
        ray = self.ray
        job_ref = ray.put(job)  # shipped once, not with every task
        todo = iter(items)
        pending: deque[tuple[Any, Any]] = deque()

        def submit() -> None:
            item = next(todo, _DONE)
            if item is not _DONE:
                pending.append((item, self._remote.remote(job_ref, item)))

        try:
            for _ in range(in_flight(workers)):
                submit()
            while pending:
                item, ref = pending.popleft()
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # a worker or node died: name the item, go on
                    result = job.lost(item, f"Ray task failed: {type(e).__name__}: {_first_line(e)}")
                submit()
                yield result
        finally:
            for _item, ref in pending:  # stopped early (Ctrl-C, an error): drop what has not run
                with contextlib.suppress(Exception):  # already finished or gone: nothing to cancel
                    ray.cancel(ref)

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
