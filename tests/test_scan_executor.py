"""The executor protocol of ``scan``/``trend``: any job, any executor, the same promises.

A toy job that knows nothing about bundles runs through the local executor (in process and in a
process pool) and through ``RayPool`` on the fake Ray of ``test_scan_ray``; ``RayPool`` depends on
the protocol module only.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from test_scan_ray import FakeRay
from toy_jobs import Echo, Square

import yolodbg
from yolodbg.scan import ray_pool
from yolodbg.scan.executor import Executor, Job, LocalExecutor, drive
from yolodbg.scan.ray_pool import RayPool
from yolodbg.scan.run import LOCAL, ScanJob


@pytest.fixture(autouse=True)
def _no_worker_setup(monkeypatch):
    monkeypatch.setattr(ray_pool, "_worker_ready", True)


def test_the_scan_job_and_every_executor_follow_the_protocol():
    assert isinstance(ScanJob(), Job) and isinstance(Square(), Job) and isinstance(Echo(), Job)
    assert isinstance(LOCAL, Executor) and isinstance(LocalExecutor(), Executor)
    with RayPool("local", ray_module=FakeRay()) as pool:
        assert isinstance(pool, Executor)


def test_one_local_worker_runs_in_this_process_in_order():
    results = list(LocalExecutor().map(Square(), range(5), workers=1))
    assert [(r[0], r[1]) for r in results] == [(i, i * i) for i in range(5)]
    assert {r[2] for r in results} == {os.getpid()}
    assert not any(r[3] for r in results)  # the calling process is never "set up" as a worker


def test_a_local_pool_keeps_item_order_in_other_processes():
    results = list(LocalExecutor().map(Square(), range(7), workers=2))
    assert [(r[0], r[1]) for r in results] == [(i, i * i) for i in range(7)]
    assert os.getpid() not in {r[2] for r in results}
    assert all(r[3] for r in results)  # every worker ran setup_worker before its items


def test_ray_keeps_item_order_bounds_flight_and_turns_a_lost_task_into_the_jobs_result():
    fake = FakeRay()
    with RayPool("local", ray_module=fake) as pool:
        results = list(pool.map(Echo(), [(0, "a"), (1, "b"), (2, "c")], workers=1))
    assert [r[0] for r in results] == [(0, "a"), (1, "b"), (2, "c")]
    assert fake.max_in_flight == 2 and fake.shut
    fake = FakeRay(lost={"b"})
    with RayPool("local", ray_module=fake) as pool:
        results = list(pool.map(Echo(), [(0, "a"), (1, "b")], workers=1))
    assert results[1][0] == (1, "b") and results[1][2] == -1  # job.lost's result
    assert (
        results[1][1].startswith("Ray task failed: _RayError: The worker died") and "\n" not in results[1][1]
    )


def test_drive_feeds_the_sink_in_order_and_a_stop_closes_the_map():
    seen: list[tuple[int, int]] = []
    assert drive(LOCAL, Square(), range(4), lambda i, r: seen.append((i, r[1]))) is False
    assert seen == [(0, 0), (1, 1), (2, 4), (3, 9)]

    fake = FakeRay()

    def hard_stop(_i, _r):
        raise KeyboardInterrupt

    with RayPool("", ray_module=fake) as pool:
        items = [(i, str(i)) for i in range(5)]
        assert drive(pool, Echo(), items, hard_stop, workers=2) is True
    assert fake.cancelled == ["1", "2", "3", "4"] and fake.in_flight == 0


def _yolodbg_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yolodbg"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("yolodbg"))
    return names


def test_the_ray_executor_depends_only_on_the_protocol():
    scan_dir = Path(yolodbg.__file__).parent / "scan"
    assert _yolodbg_imports(scan_dir / "ray_pool.py") == {"yolodbg.errors", "yolodbg.scan.executor"}
    assert _yolodbg_imports(scan_dir / "executor.py") == set()  # the standard library only


def test_spawned_pool_workers_get_the_job_set_up_and_keep_order():
    # what macOS and Windows do (and Linux when a job is not single-threaded): fresh interpreters
    results = list(LocalExecutor(fork=False).map(Square(), range(3), workers=2))
    assert [(r[0], r[1]) for r in results] == [(0, 0), (1, 1), (2, 4)]
    assert os.getpid() not in {r[2] for r in results} and all(r[3] for r in results)
