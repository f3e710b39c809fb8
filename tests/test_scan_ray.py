"""``scan --ray``: the same report as a local scan, in file order, bounded in flight, errors in one line.

A fake Ray module checks the driver's logic everywhere; the last test runs a real local Ray
when it is installed (``pip install 'yolodbg[ray]'``).
"""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from test_scan import _write

from yolodbg.cli import main
from yolodbg.errors import InputError
from yolodbg.scan import ray_pool as scan_ray
from yolodbg.scan.ray_pool import RayPool
from yolodbg.scan.run import Failed, ScanJob, scan


class _RayError(Exception):
    pass


class _Ref:
    def __init__(self, fn, job, item):
        self.fn, self.job, self.item = fn, job, item
        self.seq, self.path = item  # a scan's items are BundleFile(seq, path)


class FakeRay:
    """The few calls of Ray's API the driver makes; tasks run when their result is asked for."""

    class exceptions:  # mirrors ray.exceptions
        RayError = _RayError

    def __init__(self, initialized=False, init_error=None, lost=()):
        self.initialized, self.init_error, self.lost = initialized, init_error, set(lost)
        self.init_kwargs = None
        self.shut = False
        self.in_flight = self.max_in_flight = 0
        self.order: list[int] = []
        self.cancelled: list[str] = []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        if self.init_error is not None:
            raise self.init_error
        self.init_kwargs, self.initialized = kwargs, True

    def shutdown(self):
        self.shut, self.initialized = True, False

    def cluster_resources(self):
        return {"CPU": 3.0, "memory": 1e9}

    def put(self, value):
        return ("object", value)

    def remote(self, num_cpus):
        assert num_cpus == 1
        fake = self

        class Remote:
            def __init__(self, fn):
                self.fn = fn

            def remote(self, job_ref, item):
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                return _Ref(self.fn, job_ref[1], item)

        return Remote

    def get(self, ref):
        self.in_flight -= 1
        self.order.append(ref.seq)
        if ref.path in self.lost:
            raise _RayError("The worker died unexpectedly while executing this task.\nmore lines")
        return ref.fn(ref.job, ref.item)

    def cancel(self, ref):
        self.in_flight -= 1
        self.cancelled.append(ref.path)


@pytest.fixture(autouse=True)
def _no_worker_setup(monkeypatch):
    # the fake runs tasks in this process: keep its torch threads and allocator as they are
    monkeypatch.setattr(scan_ray, "_worker_ready", True)


def _same(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_ray_map_gives_the_local_report_in_file_order_with_bounded_flight(tmp_path):
    paths = _write(tmp_path, n=5, bs=2)
    local = scan(paths, ScanJob()).summary()
    fake = FakeRay()
    with RayPool("local", ray_module=fake) as pool:
        assert fake.init_kwargs["address"] == "local" and pool.cpus() == 3
        remote = scan(paths, ScanJob(), workers=1, executor=pool).summary()
    assert _same(local, remote)
    assert fake.order == [0, 1, 2, 3, 4]
    assert fake.max_in_flight == 2  # 2 × workers
    assert fake.shut  # we started it: we stop it


def test_trend_on_ray_equals_trend_here(tmp_path):
    from yolodbg.scan.trend import trend

    for epoch in (1, 2, 3):
        _write(tmp_path / f"ep{epoch}", n=2, bs=2, epoch=epoch, name=f"e{epoch}_")
    local = trend([tmp_path], ScanJob())
    with RayPool("local", ray_module=FakeRay()) as pool:
        remote = trend([tmp_path], ScanJob(), workers=2, executor=pool)
    assert len(local["checkpoints"]) == 3 and _same(local, remote)


def test_a_lost_ray_task_names_its_bundle_and_the_scan_goes_on(tmp_path):
    paths = _write(tmp_path, n=3, bs=2)
    fake = FakeRay(lost={str(paths[1])})
    seen = []
    with RayPool("", ray_module=fake) as pool:
        agg = scan(paths, ScanJob(evaluate=False), workers=2, executor=pool, on_record=seen.append)
    assert fake.init_kwargs["address"] is None  # --ray alone: Ray's own default
    assert agg.bundles == 2
    failed = [r for r in seen if isinstance(r, Failed)]
    assert len(failed) == 1 and failed[0].source == str(paths[1]) and failed[0].internal
    assert "worker died" in failed[0].message and "\n" not in failed[0].message


def test_ctrl_c_cancels_the_tasks_in_flight(tmp_path):
    paths = _write(tmp_path, n=5, bs=2)
    fake = FakeRay()

    def hard_stop(rec):
        raise KeyboardInterrupt

    with RayPool("", ray_module=fake) as pool:
        agg = scan(paths, ScanJob(evaluate=False), workers=2, executor=pool, on_record=hard_stop)
    assert agg.interrupted and agg.bundles == 1
    assert fake.cancelled == [
        str(p) for p in paths[1:5]
    ]  # 2 × 2 in flight: refilled before the record is yielded
    assert fake.in_flight == 0


def test_a_session_of_the_caller_is_used_and_left_running(tmp_path):
    paths = _write(tmp_path, n=1, bs=2)
    fake = FakeRay(initialized=True)
    with RayPool("auto", ray_module=fake) as pool:
        assert scan(paths, ScanJob(evaluate=False), executor=pool).bundles == 1
    assert fake.init_kwargs is None and not fake.shut


def test_unreachable_cluster_is_an_input_error():
    fake = FakeRay(init_error=ConnectionError("Could not find any running Ray instance.\ndetails"))
    with pytest.raises(InputError, match=r"--ray auto: cannot connect to Ray \(Could not find any running"):
        RayPool("auto", ray_module=fake)


def test_cli_ray_without_ray_or_cluster_is_one_line_and_keeps_the_rows_file(tmp_path, monkeypatch):
    _write(tmp_path, n=1, bs=1)
    rows = tmp_path / "gts.jsonl"
    rows.write_text("mine\n")
    runner = CliRunner()
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    res = runner.invoke(main, ["scan", str(tmp_path), "--ray", "local", "--rows", str(rows)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--ray: Ray is not installed; pip install 'yolodbg[ray]'" in res.output
    monkeypatch.setitem(sys.modules, "ray", FakeRay(init_error=ConnectionError("no cluster")))
    res = runner.invoke(main, ["trend", str(tmp_path), "--ray", "auto"])
    assert res.exit_code == 2 and "--ray auto: cannot connect to Ray (no cluster)" in res.output
    assert rows.read_text() == "mine\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gts.jsonl")]  # no temp file left


@pytest.mark.parametrize("value", ["preds/", "nohost", "host:port", ":6379"])
def test_cli_ray_takes_only_an_address(tmp_path, value):
    res = CliRunner().invoke(main, ["scan", str(tmp_path), "--ray", value])
    assert res.exit_code == 2 and "is not a Ray address; use local, auto, HOST:PORT or ray://" in res.output


def test_cli_ray_address_forms_pass(monkeypatch, tmp_path):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    _write(tmp_path, n=1, bs=2)
    for value in ("local", "auto", "10.0.0.5:6379", "ray://head:10001"):
        res = CliRunner().invoke(main, ["scan", str(tmp_path), "--ray", value, "--no-map", "--json", "-"])
        assert res.exit_code == 0, res.output
        assert fake.init_kwargs["address"] == value and fake.shut
        assert json.loads(res.stdout)["bundles"] == 1


def test_cli_on_a_real_local_ray_prints_the_local_report(tmp_path):
    pytest.importorskip("ray", reason="Ray not installed (optional extra: pip install 'yolodbg[ray]')")
    _write(tmp_path, n=3, bs=2)
    runner = CliRunner()
    local = runner.invoke(main, ["scan", str(tmp_path), "--workers", "1", "--json", "-"])
    remote = runner.invoke(main, ["scan", str(tmp_path), "--ray", "local", "--workers", "2", "--json", "-"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert a["bundles"] == 3 and _same(a, b)


def test_audit_runs_on_the_same_executor_as_scan(monkeypatch, tmp_path):
    """``audit --ray`` goes through RayPool like scan: one task per bundle, in file order, the local document."""
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "sample_data"
    for k in range(3):
        (tmp_path / f"b{k}.pt").write_bytes((sample / "yolov8n_val.pt").read_bytes())
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    args = ["audit", str(tmp_path), "--gt", str(sample / "coco_val_noisy.json"), "--json", "-"]
    local = CliRunner().invoke(main, [*args, "--workers", "1"])
    remote = CliRunner().invoke(main, [*args, "--ray", "auto", "--workers", "2"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    a.pop("versions"), b.pop("versions")
    assert fake.order == [0, 1, 2] and fake.max_in_flight <= 4 and fake.shut
    assert a["bundles"] == 3 and _same(a, b)
