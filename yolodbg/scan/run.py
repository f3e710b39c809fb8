"""The per-bundle work of ``scan``/``trend`` (:class:`ScanJob`) and its drive over files.

Where the work runs is an :class:`~yolodbg.scan.executor.Executor`: this process or a local
process pool (:class:`~yolodbg.scan.executor.LocalExecutor`, the default) or a Ray cluster
(``yolodbg.scan.ray_pool.RayPool``). Records come back in file order whatever the executor and the
number of workers, and every bundle is computed with torch on one thread wherever it runs (this
process, a pool worker, a Ray task): torch splits reductions and matrix products by its thread
count, so ``cpu_count // workers`` threads would change the last digits of sums with
``--workers``. So the report does not depend on ``--workers``; at most ``2 × workers`` bundles
are in flight, so memory does not grow with the number of files. Workers ignore Ctrl-C; the
parent stops submitting, cancels what has not started and returns what it has (see
``yolodbg scan``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from yolodbg.errors import InputError
from yolodbg.scan.executor import Executor, Job, LocalExecutor
from yolodbg.scan.executor import drive as drive_items

if TYPE_CHECKING:  # this module stays light: spawned workers import it before ignoring Ctrl-C
    from yolodbg.explain import Explanation
    from yolodbg.scan.aggregate import ScanAggregate
    from yolodbg.scan.records import BundleRecord

T = TypeVar("T")

NEGATIVES_PER_BUNDLE = 20  # background anchors ranked per bundle to find missing-label offenders
BUNDLE_THREADS = 1  # torch threads per bundle everywhere: the same summation order for every --workers


class BundleFile(NamedTuple):
    """One item of the map: a bundle file and its place in the scan (``seq`` keys its COCOeval images)."""

    seq: int
    path: str


@dataclass(frozen=True)
class BundleJob:
    """The options every per-bundle job reads a bundle with (picklable: it travels to the workers),
    and the parts of the :class:`~yolodbg.scan.executor.Job` protocol they share: one torch thread per
    worker, a lost item reported as a :class:`Failed` record naming the file. :func:`explain_file`
    loads and replays a bundle with them."""

    gt: str | None = None
    recipe: str | None = None
    head: str | None = None
    input_size: tuple[int, int] | None = None
    strides: tuple[float, ...] | None = None
    image_ids: tuple[str, ...] | None = None
    nc: int | None = None
    letterbox: str | None = None

    def setup_worker(self) -> None:
        setup_worker(BUNDLE_THREADS)

    def lost(self, item: BundleFile, message: str) -> Failed:
        return Failed(item.path, f"internal error: {message}", internal=True)


@dataclass(frozen=True)
class ScanJob(BundleJob):
    """What every bundle of a scan goes through: a :class:`BundleJob` whose ``run`` is :func:`process`
    (replay, COCO evaluation unless ``evaluate`` is off, reduce to a record)."""

    evaluate: bool = True
    negatives: int = NEGATIVES_PER_BUNDLE

    def run(self, item: BundleFile) -> BundleRecord | Failed:
        return process(self, item.path, item.seq)


@dataclass(frozen=True)
class Failed:
    """A bundle that could not be processed (bad input): its file and the one-line reason."""

    source: str
    message: str
    internal: bool = False  # a bug in yolodbg rather than bad input


def _natural(path: Path) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(path))]


def expand(spec: str | os.PathLike) -> list[Path]:
    """A folder (its ``*.pt`` files, recursively), a glob pattern, or a file -> files in natural order."""
    p = Path(spec)
    if p.exists() and not p.is_dir() and not p.is_file():  # a FIFO or a device: say what it is, never open it
        from yolodbg.paths import regular_file

        regular_file(p, "the bundle", "pass bundle files or folders of them")
    if p.is_dir():
        files = [f for f in p.rglob("*.pt") if f.is_file()]
        if not files:
            raise InputError(f"{p}: no .pt bundles in this folder; pass a folder of bundles or the files")
        return sorted(files, key=_natural)
    if p.is_file():
        return [p]
    matches = [Path(m) for m in glob.glob(str(spec), recursive=True) if Path(m).is_file()]
    if not matches:
        raise InputError(f"{spec}: no such file or folder, and no file matches it as a glob pattern")
    return sorted(matches, key=_natural)


def expand_all(specs: Sequence[str | os.PathLike]) -> list[Path]:
    return [f for s in specs for f in expand(s)]


TRIM_EVERY = 8  # bundles between two returns of freed heap memory to the OS (allocator not tuned)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD = 1 << 30  # free memory the heap keeps at its top instead of giving it back


class _Allocator:
    """glibc ``malloc`` for a stream of bundles of one shape.

    Each bundle allocates and frees the same tensors of tens of MB. By default glibc gives the
    freed top of its heap back to the OS, so every bundle faults its pages in again (~40 000
    page faults, a third of the time of a batch of 8 at 640); and the holes it keeps make the
    resident size creep up (+400 MB over 100 bundles in ``benchmarks/bench_scan.py``), which
    ``malloc_trim`` every ``TRIM_EVERY`` bundles undoes.

    :meth:`tune` (the ``scan``/``trend`` commands and their workers: processes of ours) fixes
    the thresholds instead: blocks below 32 MB come from the heap and the heap keeps what it
    freed, so a bundle reuses the previous one's pages. A process that also aggregates (one
    worker) still trims every ``TRIM_EVERY`` bundles, since its records, allocated between the
    large blocks, would otherwise pin holes open; a pool worker keeps nothing between bundles
    and never trims. In a process it does not own (``scan()`` called from a library user's
    code) it only trims. A no-op where there is no glibc.
    """

    def __init__(self) -> None:
        self.count = 0
        self.tuned = False
        self.trim_every = TRIM_EVERY
        self._libc = None
        try:
            import ctypes

            self._libc = ctypes.CDLL("libc.so.6")
            self._libc.malloc_trim, self._libc.mallopt  # noqa: B018  (both must exist)
        except (OSError, AttributeError):
            self._libc = None

    def tune(self, trim_every: int = TRIM_EVERY) -> None:
        """Fix the thresholds; then trim every ``trim_every`` bundles (0: never)."""
        if self._libc is None:
            return
        self.trim_every = trim_every
        if not self.tuned:
            m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
            ok = self._libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1
            self.tuned = ok and self._libc.mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1

    def after_bundle(self) -> None:
        self.count += 1
        if self._libc is not None and self.trim_every and self.count % self.trim_every == 0:
            self._libc.malloc_trim(0)


allocator = _Allocator()


def process(job: ScanJob, path: str, seq: int) -> BundleRecord | Failed:
    """The per-bundle map: load, explain, evaluate, reduce to a record (bad input -> :class:`Failed`).

    Always on :data:`BUNDLE_THREADS` torch threads, so its sums do not depend on where it runs."""

    def record() -> BundleRecord:
        from yolodbg.evaluate.coco import evaluate
        from yolodbg.scan.records import record_of

        ex = explain_file(job, path, top=job.negatives)
        return record_of(ex, evaluate(ex, job.gt, bundle_key=seq) if job.evaluate else None)

    return guarded(path, record)


def explain_file(job: BundleJob, path: str, top: int) -> Explanation:
    """Load ``path`` with the bundle options of ``job`` and replay it: the first step of every
    per-bundle job (scan's, audit's)."""
    from yolodbg import bundle as bundle_mod
    from yolodbg.explain import explain
    from yolodbg.recipes import get_recipe

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
    return explain(b, job.gt, recipe, top=top, positives=False)


def guarded(path: str, step: Callable[[], T]) -> T | Failed:
    """Run one bundle's ``step`` on :data:`BUNDLE_THREADS` torch threads without autograd: bad input
    becomes a :class:`Failed` naming the file, a bug an internal one (the map goes on either way)."""
    import torch

    try:
        with bundle_threads(), torch.no_grad():
            return step()
    except InputError as e:
        return Failed(str(path), str(e))
    except Exception as e:  # a bug: keep the map going, say where (explain FILE --debug shows the traceback)
        msg = f"internal error: {type(e).__name__}: {e} (a bug in yolodbg; run explain on this file with --debug)"
        return Failed(str(path), msg, internal=True)
    finally:
        allocator.after_bundle()


WORKER_MEMORY = (
    1 << 30
)  # bytes of free memory asked per automatic worker (a batch of 8 at 640 peaks near 0.8 GB)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def auto_workers(requested: int, n_bundles: int) -> int:
    """``--workers``: 0 means one per CPU core, but no more than bundles, nor than free GiB of memory.

    A number asked for is capped, silently, at the CPU cores and the bundles: more processes than
    cores only compete for them, and more than bundles would start processes that get no work
    (``--workers 100000`` used to start as many processes as the machine allowed).
    """
    if requested > 0:
        return max(1, min(requested, available_cpus(), n_bundles))
    n = min(available_cpus(), n_bundles)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        n = min(n, free // WORKER_MEMORY)
    except (ValueError, OSError, AttributeError):  # not on this platform
        pass
    return max(1, n)


def setup_worker(threads: int) -> None:
    """A worker process of ours (local pool or Ray): torch's threads, and a heap that keeps its pages."""
    import torch

    torch.set_num_threads(threads)
    allocator.tune(trim_every=0)  # a worker: nothing outlives a bundle


@contextmanager
def bundle_threads() -> Iterator[None]:
    """Run torch on :data:`BUNDLE_THREADS` threads in this process, then give back the caller's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(BUNDLE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


LOCAL = LocalExecutor(fork=BUNDLE_THREADS == 1)  # forking is safe for single-threaded torch only


def files_of(paths: Sequence[str | os.PathLike]) -> list[BundleFile]:
    """The items of a scan: every path with its index."""
    return [BundleFile(seq, str(p)) for seq, p in enumerate(paths)]


def drive(
    paths: Sequence[str | os.PathLike],
    job: Job[BundleFile, Any],
    sink: Callable[[int, Any], None],
    workers: int = 1,
    executor: Executor | None = None,
) -> bool:
    """Feed ``sink(file_index, record)`` in file order; True when stopped early by Ctrl-C.

    ``job``: a :class:`ScanJob`, or any job over :class:`BundleFile` items (``audit``'s).

    ``executor`` runs the map (default: :data:`LOCAL`: this process for one worker, else a process
    pool of ``workers``)."""
    return drive_items(LOCAL if executor is None else executor, job, files_of(paths), sink, workers)


def scan(
    paths: Sequence[str | os.PathLike],
    job: ScanJob,
    workers: int = 1,
    top: int = 15,
    on_record: Callable[[BundleRecord | Failed], None] | None = None,
    executor: Executor | None = None,
) -> ScanAggregate:
    """Scan bundles into a :class:`ScanAggregate` (``interrupted`` is set when Ctrl-C stopped it).

    ``executor``: what maps the bundles (a ``RayPool`` for ``--ray``; any
    :class:`~yolodbg.scan.executor.Executor` will do); None runs locally on ``workers``."""
    from yolodbg.scan.aggregate import ScanAggregate

    agg = ScanAggregate(top)

    def sink(_i: int, rec: BundleRecord | Failed) -> None:
        if isinstance(rec, Failed):
            agg.fail(rec.source, rec.message)
        else:
            agg.add(rec)
        if on_record is not None:
            on_record(rec)

    agg.interrupted = drive(paths, job, sink, workers, executor)
    return agg
