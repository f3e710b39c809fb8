"""Hostile inputs and outputs: resources, output paths, scans over several models, Ctrl-C.

Every case asserts the exit code, that the message is one line naming the file and the fix,
and that nothing the user owns changed (contents hashed, file types stat'ed before and after).
Reading a FIFO blocks for ever, so every test here runs under an alarm: a regression fails
the test instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import batch, ultra_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolodbg import bundle
from yolodbg.atomic import atomic_write
from yolodbg.cli import main
from yolodbg.errors import BundleError, InputError

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]
ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
ALARM_SECONDS = 60


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail (never hang) when a FIFO is opened for reading by mistake."""

    def expired(_signum, _frame):
        raise TimeoutError(f"no answer within {ALARM_SECONDS} s: a FIFO or device was opened")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(ALARM_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def runner():
    return CliRunner()


def _save(path: Path, nc: int = 3, **kw) -> Path:
    strides = kw.pop("strides", (8, 16, 32))
    out = ultra_output(bs=2, size=(128, 96), nc=nc, seed=2, strides=strides)
    return bundle.save(path, out, input_size=[128, 96], strides=list(strides), targets=batch(ROWS), **kw)


@pytest.fixture
def preds(tmp_path):
    return _save(tmp_path / "p.pt")


def _state(*paths: Path) -> dict[str, tuple]:
    """What the user owns at these paths: file type, and the sha256 of regular files (folders: listing)."""
    out = {}
    for p in paths:
        try:
            st_ = os.lstat(p)
        except FileNotFoundError:
            out[str(p)] = ("missing",)
            continue
        mode = stat.S_IFMT(st_.st_mode)
        if stat.S_ISREG(st_.st_mode):
            out[str(p)] = (mode, hashlib.sha256(p.read_bytes()).hexdigest())
        elif stat.S_ISDIR(st_.st_mode):
            out[str(p)] = (mode, tuple(sorted(os.listdir(p))))
        elif stat.S_ISLNK(st_.st_mode):
            out[str(p)] = (mode, os.readlink(p))
        else:
            out[str(p)] = (mode, st_.st_rdev)
    return out


def one_line_error(res, code: int = 2, *needles: str) -> str:
    """The exit code, one line on stderr without a traceback, and the words it must hold."""
    assert res.exit_code == code, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output and "internal error" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _char_device(tmp_path: Path) -> Path:
    """A character device to write to: a private copy of /dev/null when we may make one, else /dev/null
    itself (a user who may not create device nodes may not replace /dev/null either)."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return Path("/dev/null")
    return node


# -- resources: inputs that are not regular files ----------------------------------------------


def _non_regular_inputs(tmp_path: Path, preds: Path) -> dict[str, tuple[list[str], Path]]:
    """name -> (command line, the path that must be refused)."""
    fifo = _fifo(tmp_path / "pipe.pt")
    gt_fifo = _fifo(tmp_path / "ann.json")
    snap_fifo = _fifo(tmp_path / "snap.json")
    toml_fifo = _fifo(tmp_path / "my.toml")
    toml_dir = tmp_path / "dir.toml"
    toml_dir.mkdir()
    labels = tmp_path / "labels"
    labels.mkdir()
    label_fifo = _fifo(labels / "a.txt")
    b = _save(tmp_path / "named.pt", images=[{"image_id": 1, "file_name": "a.jpg"}, {"image_id": 2}])
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    snap = tmp_path / "snap_with_gt.json"
    coco = tmp_path / "coco.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 96, "height": 128} for i in (1, 2)]
    coco.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    res = CliRunner().invoke(main, ["snapshot", str(b), "--gt", str(coco), "-o", str(snap)])
    assert res.exit_code == 0, res.output
    return {
        "bundle folder": (["explain", str(folder)], folder),
        "snapshot folder": (["check", str(folder)], folder),
        "compare folder": (["compare", str(preds), str(folder)], folder),
        "bundle FIFO": (["explain", str(fifo)], fifo),
        "bundle /dev/zero": (["explain", "/dev/zero"], Path("/dev/zero")),
        "bundle /dev/urandom": (
            ["snapshot", "/dev/urandom", "-o", str(tmp_path / "s.json")],
            Path("/dev/urandom"),
        ),
        "gt FIFO": (["explain", str(preds), "--gt", str(gt_fifo)], gt_fifo),
        "gt /dev/zero": (["explain", str(preds), "--gt", "/dev/zero"], Path("/dev/zero")),
        "snapshot FIFO": (["check", str(snap_fifo)], snap_fifo),
        "check --gt FIFO": (["check", str(snap), str(b), "--gt", str(gt_fifo)], gt_fifo),
        "scan --gt /dev/zero": (["scan", str(preds), "--gt", "/dev/zero"], Path("/dev/zero")),
        "recipe FIFO": (["explain", str(preds), "-r", str(toml_fifo)], toml_fifo),
        "recipe folder": (["explain", str(preds), "-r", str(toml_dir)], toml_dir),
        "label file FIFO": (["explain", str(b), "--gt", str(labels)], label_fifo),
        "scan FIFO": (["scan", str(fifo), "--no-map"], fifo),
        "trend /dev/zero": (["trend", "/dev/zero", "--no-map"], Path("/dev/zero")),
        "capture --model FIFO": (
            ["capture", "--model", str(fifo), "--images", str(tmp_path), "-o", "o/"],
            fifo,
        ),
    }


NON_REGULAR = [
    "bundle folder",
    "snapshot folder",
    "compare folder",
    "bundle FIFO",
    "bundle /dev/zero",
    "bundle /dev/urandom",
    "gt FIFO",
    "gt /dev/zero",
    "snapshot FIFO",
    "check --gt FIFO",
    "scan --gt /dev/zero",
    "recipe FIFO",
    "recipe folder",
    "label file FIFO",
    "scan FIFO",
    "trend /dev/zero",
    "capture --model FIFO",
]


@pytest.mark.parametrize("case", NON_REGULAR)
def test_inputs_that_are_not_regular_files_are_refused_without_opening_them(runner, tmp_path, preds, case):
    args, bad = _non_regular_inputs(tmp_path, preds)[case]
    before = _state(tmp_path, preds, bad)
    line = one_line_error(runner.invoke(main, args, env=ENV), 2, str(bad))
    assert any(w in line for w in ("FIFO", "character device", "folder")), line
    assert "regular file" in line and ";" in line  # what it is, then the fix
    assert _state(tmp_path, preds, bad) == before
    if "FIFO" in case:
        assert stat.S_ISFIFO(os.stat(bad).st_mode)


@pytest.mark.parametrize(
    ("case", "size"),
    [("recipe", 2 << 20), ("label", (64 << 20) + 1), ("snapshot", (1 << 30) + 1)],
)
def test_text_inputs_far_larger_than_any_real_one_are_refused_before_reading(
    runner, tmp_path, preds, case, size
):
    names = {"recipe": "huge.toml", "label": "labels/a.txt", "snapshot": "huge.json"}
    big = tmp_path / names[case]
    big.parent.mkdir(exist_ok=True)
    with big.open("wb") as f:
        f.truncate(size)  # sparse: no disk space, no time
    named = _save(tmp_path / "named.pt", images=[{"image_id": 1, "file_name": "a.jpg"}, {"image_id": 2}])
    args = {
        "recipe": ["explain", str(preds), "-r", str(big)],
        "label": ["explain", str(named), "--gt", str(big.parent)],
        "snapshot": ["check", str(big)],
    }[case]
    before = _state(big)
    line = one_line_error(runner.invoke(main, args, env=ENV), 2, str(big), "MiB", "check the path")
    assert "more than" in line
    assert _state(big) == before


# -- resources: tensors that claim more elements than their file holds --------------------------


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


EXPANDED = {
    # an Ultralytics output whose scores are one float expanded to 8 × 80 × 10⁸ (256 GB as float32)
    "stride-0 scores": lambda: {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": {
            "boxes": torch.zeros(1).expand(8, 64, 10**8),
            "scores": torch.zeros(1).expand(8, 80, 10**8),
            "feats": [torch.empty(8, 0, 80, 80)],
        },
    },
    # overlapping as_strided windows: 2·10⁵ floats seen as 3 × 10⁵ × 10⁵
    "as_strided overlap": lambda: [
        torch.zeros(2 * 10**5).as_strided((1, 3, 10**5, 10**5, 1), (0, 0, 1, 1, 1))
    ],
    # a bare YOLOX-style list, one level huge
    "bare list": lambda: [torch.zeros(2, 85, 20, 20), torch.zeros(1).expand(2, 85, 10**5, 10**4)],
    # the targets, not the outputs
    "targets": lambda: {
        "yolodbg": 1,
        "head": "ultralytics",
        "outputs": ultra_output(bs=2, size=(64, 64)),
        "targets": {
            "batch_idx": torch.zeros(1).expand(10**9),
            "cls": torch.zeros(1).expand(10**9, 1),
            "bboxes": torch.zeros(1).expand(10**9, 4),
        },
    },
}


@pytest.mark.parametrize("case", list(EXPANDED))
def test_tensors_claiming_far_more_than_the_file_holds_are_refused_before_allocating(runner, tmp_path, case):
    path = tmp_path / "expanded.pt"
    torch.save(EXPANDED[case](), path)
    assert path.stat().st_size < 1 << 20  # a small file ...
    before, rss = _state(path), _max_rss_mib()
    line = one_line_error(
        runner.invoke(main, ["explain", str(path)], env=ENV),
        2,
        str(path),
        "claims",
        "refused before allocating",
    )
    assert ".contiguous()" in line  # the fix
    assert _max_rss_mib() - rss < 512  # ... that was never materialised
    assert _state(path) == before


def test_a_small_expanded_tensor_is_still_read(tmp_path):
    """Expanded tensors of a few MB (an anchor grid, say) cost nothing to materialise: accepted."""
    out = ultra_output(bs=2, size=(64, 64))
    doc = {"yolodbg": 1, "head": "ultralytics", "outputs": out, "anchors": torch.zeros(1).expand(3, 1000, 2)}
    torch.save(doc, tmp_path / "grid.pt")
    assert bundle.load(tmp_path / "grid.pt").batch_size == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(1, 10**4), min_size=1, max_size=4),
    file_size=st.integers(1 << 10, 1 << 30),
)
def test_claims_are_refused_exactly_beyond_the_bound(shape, file_size):
    """Property: a stride-0 tensor is refused iff all tensors claim more than twice the file plus the slack."""
    t = torch.zeros(1).expand(*shape)
    claimed = t.numel() * t.element_size()
    limit = 2 * file_size + bundle.CLAIM_SLACK
    if claimed <= limit:
        bundle.check_claims({"outputs": t}, Path("x.pt"), file_size)
    else:
        with pytest.raises(BundleError, match="claims"):
            bundle.check_claims({"outputs": t}, Path("x.pt"), file_size)


# -- resources: --workers --------------------------------------------------------------------


def test_workers_are_capped_by_cpus_and_bundles():
    from yolodbg.scan.run import auto_workers, available_cpus

    cpus = available_cpus()
    assert auto_workers(48, 1) == 1
    assert auto_workers(100000, 100000) == cpus
    assert auto_workers(100000, 3) == min(cpus, 3)
    assert auto_workers(1, 100) == 1
    assert 1 <= auto_workers(0, 100) <= cpus


def test_huge_workers_on_one_bundle_start_no_pool(runner, tmp_path, preds, monkeypatch):
    import yolodbg.scan.executor as scan_executor

    def no_pool(*_a, **_k):
        raise AssertionError("a process pool was started for one bundle")

    monkeypatch.setattr(scan_executor, "ProcessPoolExecutor", no_pool)
    res = runner.invoke(main, ["scan", str(preds), "--no-map", "--workers", "100000", "--json", "-"], env=ENV)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["bundles"] == 1


# -- outputs: paths that cannot take a file -----------------------------------------------------

OUTPUT_OPTIONS = {
    "explain --json": lambda p, out: ["explain", str(p), "--json", out],
    "explain --html": lambda p, out: ["explain", str(p), "--html", out],
    "explain --plot": lambda p, out: ["explain", str(p), "--plot", out],
    "snapshot -o": lambda p, out: ["snapshot", str(p), "-o", out],
    "compare --json": lambda p, out: [
        "compare",
        str(p),
        "-r",
        "yolov8",
        "-r",
        "yolov8:gain.cls=1",
        "--json",
        out,
    ],
    "scan --json": lambda p, out: ["scan", str(p), "--no-map", "--json", out],
    "scan --rows": lambda p, out: ["scan", str(p), "--no-map", "--rows", out],
    "trend --json": lambda p, out: ["trend", str(p), "--no-map", "--json", out],
    "trend --plot": lambda p, out: ["trend", str(p), "--no-map", "--plot", out],
}
BAD_OUTPUTS = ["a folder", "under /proc", "parent is a file"]


def _bad_output(kind: str, tmp_path: Path, option: str) -> str:
    if kind == "a folder":
        folder = tmp_path / "outdir"
        folder.mkdir(exist_ok=True)
        (folder / "keep.txt").write_text("mine")
        return str(folder)
    if kind == "under /proc":
        return "/proc/self/yolodbg-report" + ("" if option.endswith("--plot") else ".json")
    blocker = tmp_path / "file.txt"
    blocker.write_text("mine")
    return str(blocker / "out.json")


@pytest.mark.parametrize("kind", BAD_OUTPUTS)
@pytest.mark.parametrize("option", list(OUTPUT_OPTIONS))
def test_unwritable_outputs_are_refused_before_the_work(runner, tmp_path, preds, monkeypatch, option, kind):
    if kind == "a folder" and option == "explain --plot":
        pytest.skip("a folder is what --plot takes")

    def no_work(*_a, **_k):
        raise AssertionError("the bundle was loaded before the output path was checked")

    monkeypatch.setattr(bundle, "load", no_work)
    out = _bad_output(kind, tmp_path, option)
    before = _state(tmp_path, preds, *(p for p in tmp_path.rglob("*")))
    line = one_line_error(runner.invoke(main, OUTPUT_OPTIONS[option](preds, out), env=ENV), 2, out)
    assert option.split()[-1] in line and "pass a" in line  # the option and the fix
    assert _state(tmp_path, preds, *(p for p in tmp_path.rglob("*"))) == before


@pytest.mark.parametrize("option", ["explain --json", "explain --html", "scan --rows", "compare --json"])
def test_an_output_that_is_an_input_is_refused(runner, tmp_path, preds, option):
    before = _state(preds)
    line = one_line_error(
        runner.invoke(main, OUTPUT_OPTIONS[option](preds, str(preds)), env=ENV), 2, str(preds)
    )
    assert "input" in line
    assert _state(preds) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(runner, tmp_path, preds):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = one_line_error(
            runner.invoke(main, ["explain", str(preds), "--json", str(ro / "r.json")], env=ENV),
            2,
            "read-only",
        )
        assert str(ro) in line
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


# -- outputs: devices, FIFOs and symbolic links -------------------------------------------------

DEVICE_OUTPUTS = {
    "explain --json": lambda p, dev: ["explain", str(p), "--json", dev],
    "explain --html": lambda p, dev: ["explain", str(p), "--html", dev],
    "scan --rows": lambda p, dev: ["scan", str(p), "--no-map", "--rows", dev],
    "trend --plot": lambda p, dev: ["trend", str(p), "--no-map", "--plot", dev],
    "snapshot -o --update": lambda p, dev: ["snapshot", str(p), "-o", dev, "--update"],
}


@pytest.mark.parametrize("option", list(DEVICE_OUTPUTS))
def test_a_character_device_is_written_through_never_replaced(runner, tmp_path, preds, option):
    dev = _char_device(tmp_path)
    before = os.stat(dev)
    res = runner.invoke(main, DEVICE_OUTPUTS[option](preds, str(dev)), env=ENV)
    assert res.exit_code == 0, res.output
    after = os.stat(dev)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not [p for p in dev.parent.iterdir() if p.name.startswith(f".{dev.name}.")]  # no temp file left


def test_snapshot_onto_a_device_without_update_is_refused(runner, tmp_path, preds):
    dev = _char_device(tmp_path)
    one_line_error(runner.invoke(main, ["snapshot", str(preds), "-o", str(dev)], env=ENV), 2, "--update")
    assert stat.S_ISCHR(os.stat(dev).st_mode)


def test_a_fifo_with_a_reader_receives_the_json(runner, tmp_path, preds):
    fifo = _fifo(tmp_path / "out.json")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    res = runner.invoke(main, ["explain", str(preds), "--json", str(fifo)], env=ENV)
    reader.join(timeout=30)
    assert res.exit_code == 0, res.output
    assert json.loads(got[0])["schema"] == "yolodbg.explain/1"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_without_a_reader_is_refused_not_waited_for(runner, tmp_path, preds):
    fifo = _fifo(tmp_path / "out.json")
    one_line_error(
        runner.invoke(main, ["explain", str(preds), "--json", str(fifo)], env=ENV), 2, str(fifo), "reader"
    )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_writing_through_a_symlink_keeps_the_link(runner, tmp_path, preds):
    real = tmp_path / "reports" / "real.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    res = runner.invoke(main, ["explain", str(preds), "--json", str(link)], env=ENV)
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["schema"] == "yolodbg.explain/1"
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.json"]  # no temp file left


def test_atomic_write_refuses_a_folder_and_a_socket(tmp_path):
    import socket

    folder = tmp_path / "d"
    folder.mkdir()
    with pytest.raises(InputError, match="folder"):
        atomic_write(folder, lambda f: f.write(b"x"))
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(InputError, match="socket"):
            atomic_write(sock_path, lambda f: f.write(b"x"))
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")

    def full_disk(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="No space left"):
        atomic_write(target, full_disk)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


# -- outputs: snapshot -o never replaces and never races ----------------------------------------


def test_snapshot_refuses_an_existing_file_without_update(runner, tmp_path, preds):
    snap = tmp_path / "s.json"
    snap.write_text("my numbers")
    one_line_error(
        runner.invoke(main, ["snapshot", str(preds), "-o", str(snap)], env=ENV), 2, str(snap), "--update"
    )
    assert snap.read_text() == "my numbers"


def test_snapshot_that_loses_the_race_replaces_nothing(runner, tmp_path, preds, monkeypatch):
    """Another snapshot takes the name while this one computes: this one fails, the other's file stays."""
    import yolodbg.snapshot as snap_mod

    snap = tmp_path / "s.json"
    make = snap_mod.make

    def racing_make(*a, **k):
        doc = make(*a, **k)
        snap.write_text("the other snapshot")
        return doc

    monkeypatch.setattr(snap_mod, "make", racing_make)
    one_line_error(
        runner.invoke(main, ["snapshot", str(preds), "-o", str(snap)], env=ENV), 2, str(snap), "--update"
    )
    assert snap.read_text() == "the other snapshot"
    assert {p.name for p in tmp_path.iterdir()} == {"p.pt", "s.json"}  # no temp file left


def test_concurrent_exclusive_writes_have_one_winner(tmp_path):
    target = tmp_path / "s.json"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def writer(k: int) -> None:
        def body(f):
            barrier.wait(timeout=10)
            f.write(f"writer {k}".encode())

        try:
            atomic_write(target, body, exclusive=True)
            outcomes.append(f"won {k}")
        except InputError:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("lost") == 7
    assert target.read_text() == f"writer {winners[0].split()[1]}"
    assert os.listdir(tmp_path) == ["s.json"]


# -- scan and trend over bundles of different models ----------------------------------------------


def _models(tmp_path: Path, case: str) -> tuple[Path, Path]:
    first = _save(tmp_path / "a.pt", category_ids=[1, 2, 3])
    second = {
        "classes": lambda: _save(tmp_path / "b.pt", nc=5),
        "strides": lambda: _save(tmp_path / "b.pt", strides=(4, 8, 16)),
        "category ids": lambda: _save(tmp_path / "b.pt", category_ids=[4, 5, 6]),
    }[case]()
    return first, second


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("scan --no-map", "classes"),
        ("scan", "classes"),
        ("scan --no-map", "strides"),
        ("scan --no-map", "category ids"),
        ("trend --no-map", "classes"),
    ],
)
def test_bundles_of_two_models_are_named_not_added_up(runner, tmp_path, command, case):
    first, second = _models(tmp_path, case)
    before = _state(first, second)
    args = [*command.split(), str(first), str(second), "--workers", "1", "--json", "-"]
    res = runner.invoke(main, args, env=ENV)
    assert res.exit_code == 2, (res.output, res.exception)
    doc = json.loads(res.stdout)
    failed = (
        doc["failed"] if command.startswith("scan") else [f for c in doc["checkpoints"] for f in c["failed"]]
    )
    assert len(failed) == 1 and "\n" not in failed[0], failed
    assert str(second) in failed[0] and str(first) in failed[0]  # both files that disagree
    assert case in failed[0] and "one model at a time" in failed[0]  # what differs, and the fix
    assert _state(first, second) == before


# -- Ctrl-C ------------------------------------------------------------------------------------


def _interrupt(*_a, **_k):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command", ["explain", "snapshot", "check", "compare", "capture"])
def test_ctrl_c_exits_130_with_one_line_and_no_partial_file(runner, tmp_path, preds, monkeypatch, command):
    import yolodbg.capture as capture_mod

    snap = tmp_path / "s.json"
    assert runner.invoke(main, ["snapshot", str(preds), "-o", str(snap)]).exit_code == 0
    out = tmp_path / "out.json"
    args = {
        "explain": ["explain", str(preds), "--json", str(out)],
        "snapshot": ["snapshot", str(preds), "-o", str(out)],
        "check": ["check", str(snap), "--json", str(out)],
        "compare": ["compare", str(preds), "-r", "yolov8", "-r", "yolov8:gain.cls=1", "--json", str(out)],
        "capture": ["capture", "--model", "m.yaml", "--images", str(tmp_path), "-o", str(tmp_path / "cap")],
    }[command]
    monkeypatch.setattr(bundle, "load", _interrupt)
    monkeypatch.setattr(capture_mod, "capture_model", _interrupt)
    before = _state(tmp_path, preds, snap)
    one_line_error(runner.invoke(main, args, env=ENV), 130, "interrupted")
    assert _state(tmp_path, preds, snap) == before  # no partial file, nothing replaced


def test_ctrl_c_while_writing_leaves_the_old_report(runner, tmp_path, preds, monkeypatch):
    from yolodbg.render import jsonout

    out = tmp_path / "r.json"
    out.write_text("old report")

    def interrupted_dumps(_doc):
        raise KeyboardInterrupt

    monkeypatch.setattr(jsonout, "dumps", interrupted_dumps)
    one_line_error(
        runner.invoke(main, ["explain", str(preds), "--json", str(out)], env=ENV), 130, "interrupted"
    )
    assert out.read_text() == "old report" and sorted(os.listdir(tmp_path)) == ["p.pt", "r.json"]


def test_a_bundle_larger_than_the_memory_is_refused_before_the_replay(tmp_path):
    """Real (contiguous) tensors that need more than the machine's RAM: refused, naming the file and the fix."""
    data = {"outputs": torch.zeros(4, 1000)}
    with pytest.raises(BundleError, match=r"x\.pt: .* more than this machine's memory .* smaller batch"):
        bundle.check_claims(data, tmp_path / "x.pt", file_size=16_000, memory=8_000)
    bundle.check_claims(data, tmp_path / "x.pt", file_size=16_000, memory=16_000)  # fits: accepted


def test_a_coco_json_larger_than_the_memory_is_refused(runner, tmp_path, preds, monkeypatch):
    import yolodbg.paths as paths

    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": []}) + " " * (1 << 20))
    monkeypatch.setattr(paths, "physical_memory", lambda: 1 << 19)  # more than the bundle, less than the json
    before = _state(ann)
    one_line_error(
        runner.invoke(main, ["explain", str(preds), "--gt", str(ann)], env=ENV), 2, str(ann), "check the path"
    )
    assert _state(ann) == before


def test_ray_tasks_in_flight_are_capped_by_cluster_cpus_and_bundles(monkeypatch):
    import yolodbg.scan.ray_pool as scan_ray
    from yolodbg.cli.options import executor

    class FakePool:
        def __init__(self, _address):
            pass

        def cpus(self):
            return 4

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(scan_ray, "RayPool", FakePool)
    for requested, bundles, expected in ((100000, 1000, 4), (100000, 3, 3), (0, 1000, 4), (2, 1000, 2)):
        with executor("auto", requested, bundles) as (n, _pool):
            assert n == expected, (requested, bundles, n)


# -- in a real process: a real Ctrl-C, a real /dev/stdout ---------------------------------------

SLOW_EXPLAIN = """
import sys, time
from yolodbg import bundle
from yolodbg.cli import main

def slow_load(*a, **k):
    print("ready", file=sys.stderr, flush=True)
    time.sleep(60)

bundle.load = slow_load
main(sys.argv[1:], prog_name="yolodbg")
"""


def _python(*args: str, **kw):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **ENV}
    return subprocess.Popen([sys.executable, *args], env=env, **kw)


def test_a_real_ctrl_c_exits_130_with_one_line(tmp_path, preds):
    import subprocess

    out = tmp_path / "r.json"
    proc = _python(
        "-c", SLOW_EXPLAIN, "explain", str(preds), "--json", str(out), stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == "yolodbg: interrupted"
    assert sorted(os.listdir(tmp_path)) == ["p.pt"]  # no partial report


def test_json_to_dev_stdout_redirected_to_a_file_keeps_both_outputs(tmp_path, preds):
    import subprocess

    target = tmp_path / "out.txt"
    with target.open("wb") as f:
        proc = _python(
            "-m", "yolodbg", "explain", str(preds), "--json", "/dev/stdout", stdout=f, stderr=subprocess.PIPE
        )
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    text = target.read_text()
    doc, end = json.JSONDecoder().raw_decode(text)  # the JSON first, whole ...
    assert doc["schema"] == "yolodbg.explain/1"
    assert "Summary" in text[end:]  # ... then the report, not written over it
