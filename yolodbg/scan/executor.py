"""Where a map over many items runs: the executor protocol, the local executor, and the driver.

``scan`` and ``trend`` are a map over bundle files followed by a reduce in the calling process;
any command built the same way (one item -> one small picklable result, reduced here) can reuse
this module. It knows nothing about bundles; it imports only the standard library, so a spawned
worker imports it before it ignores Ctrl-C.

The two sides:

- a :class:`Job` says what to do with one item (``run``), how to set up a worker process once
  (``setup_worker``) and what result stands for an item whose worker was lost (``lost``); it
  travels to the workers, so it must pickle;
- an :class:`Executor` runs a job over items: :class:`LocalExecutor` in this process (one worker)
  or in a local process pool, ``yolodbg.scan.ray_pool.RayPool`` on a Ray cluster.

Every executor keeps the same promises, so a report does not depend on where it was computed:

- ``map`` yields one result per item, **in the order of the items**, each as soon as it and every
  item before it are done (the reduce then adds them in a fixed order: the same sums);
- at most ``2 × workers`` items are in flight, so memory does not grow with the number of items;
- closing the iterator ``map`` returned (``generator.close()``, which :func:`drive` does when it
  stops early) cancels what has not started and does not wait for what has;
- workers ignore Ctrl-C: the calling process handles it (:func:`drive`: the first Ctrl-C finishes
  the item at hand and keeps what is done, a second one stops at once);
- ``close()`` releases what the executor holds (a session it started); executors are context
  managers.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable

Item = TypeVar("Item")
Result = TypeVar("Result")


@runtime_checkable
class Job(Protocol[Item, Result]):
    """One item's work, picklable (it is shipped to every worker)."""

    def run(self, item: Item) -> Result:
        """The map: one item to its result. Bad input should become a result, not an exception."""
        ...

    def setup_worker(self) -> None:
        """Once per worker process, before its first item (never in the calling process)."""
        ...

    def lost(self, item: Item, message: str) -> Result:
        """The result that stands for ``item`` when its worker died (``message``: one line, why)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs a :class:`Job` over items; see the module docstring for the promises it keeps."""

    def map(
        self, job: Job[Item, Result], items: Iterable[Item], workers: int = 1
    ) -> Generator[Result, None, None]:
        """Yield ``job.run(item)`` for every item, in item order, with at most ``2 × workers`` in flight.

        A generator: closing it stops the map and cancels what has not started."""
        ...

    def close(self) -> None:
        """Release what the executor holds."""
        ...


def in_flight(workers: int) -> int:
    """Items submitted ahead of the one being waited for: enough to keep every worker busy."""
    return 2 * max(1, workers)


class LocalExecutor:
    """This machine: in this process for one worker, else a ``ProcessPoolExecutor`` of ``workers``.

    ``fork``: start pool workers by forking when the platform allows it (see :func:`start_method`);
    pass False when a job runs torch on more than one thread.
    """

    def __init__(self, fork: bool = True) -> None:
        self.fork = fork

    def map(
        self, job: Job[Item, Result], items: Iterable[Item], workers: int = 1
    ) -> Generator[Result, None, None]:
        if workers <= 1:
            for item in items:
                yield job.run(item)
            return
        yield from self._pool_map(job, items, workers)

    def _pool_map(self, job: Job[Item, Result], items: Iterable[Item], workers: int) -> Iterator[Result]:
        import multiprocessing as mp

        pool = ProcessPoolExecutor(
            workers, mp.get_context(start_method(self.fork)), initializer=_init_worker, initargs=(job,)
        )
        pending: list[Future] = []
        todo = iter(items)
        try:
            for _ in range(in_flight(workers)):
                _submit(pool, job, todo, pending)
            while pending:
                result = pending.pop(0).result()
                _submit(pool, job, todo, pending)
                yield result
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Nothing outlives a :meth:`map` (its pool is shut down when the map ends)."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _submit(pool: ProcessPoolExecutor, job: Job, todo: Iterator, pending: list[Future]) -> None:
    item = next(todo, _DONE)
    if item is not _DONE:
        pending.append(pool.submit(_run, job, item))


_DONE = object()


def _run(job: Job[Item, Result], item: Item) -> Result:
    return job.run(item)


def start_method(fork: bool) -> str:
    """``fork`` where it is safe (workers start at once, modules already imported), else ``spawn``.

    A forked child inherits the parent's OpenMP state, which is only safe when the child runs
    torch single-threaded (as PyTorch's own DataLoader workers do); and only on Linux (macOS
    system libraries do not survive a fork). ``spawn`` costs a fresh interpreter per worker
    (~3 s of imports).
    """
    return "fork" if fork and sys.platform.startswith("linux") else "spawn"


def _init_worker(job: Job) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C; before the slow imports
    # a forked worker may inherit the lock of a stream the parent's progress thread was writing:
    # give it streams of its own (same descriptors)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    job.setup_worker()


class Interrupt:
    """First Ctrl-C: finish the item at hand, then stop; a second one stops at once."""

    def __init__(self) -> None:
        self.stop = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __enter__(self) -> Interrupt:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def drive(
    executor: Executor,
    job: Job[Item, Result],
    items: Iterable[Item],
    sink: Callable[[int, Result], Any],
    workers: int = 1,
) -> bool:
    """Feed ``sink(index, result)`` in item order; True when stopped early by Ctrl-C.

    Whatever stops the loop (Ctrl-C, an exception of the sink), the map is closed, so the
    executor cancels what is still queued.
    """
    results = executor.map(job, items, workers)
    with Interrupt() as state:
        try:
            for i, result in enumerate(results):
                sink(i, result)
                if state.stop:
                    return True
        except KeyboardInterrupt:
            return True
        except Exception:
            if state.stop:  # e.g. a worker hit by Ctrl-C while still starting: keep what we have
                return True
            raise
        finally:
            results.close()
    return False
