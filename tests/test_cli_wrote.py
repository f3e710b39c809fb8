"""Every file a command writes is announced on stderr as ``wrote FILE`` (stdout keeps the report or the
JSON), and the help pages that list exit codes list all five: 0, 1, 2, 3 and 130."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from helpers import batch, ultra_output

from yolodbg import bundle
from yolodbg.cli import main

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.25, 0.1, 0.15), (1, 0, 0.7, 0.6, 0.3, 0.5)]
ENV = {"COLUMNS": "100", "NO_COLOR": "1"}


@pytest.fixture
def preds(tmp_path):
    out = ultra_output(bs=2, size=(128, 96), nc=3, seed=2)
    return bundle.save(tmp_path / "p.pt", out, input_size=[128, 96], targets=batch(ROWS))


def _run(*args) -> tuple[str, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], env=ENV)
    assert res.exit_code == 0, res.output
    return res.stdout, res.stderr


def _announced(stderr: str) -> list[str]:
    return re.findall(r"^wrote (\S+)", stderr, flags=re.M)


def test_every_file_output_says_wrote_on_stderr(preds, tmp_path):
    out = {
        name: tmp_path / name
        for name in ("e.json", "r.html", "c.json", "s.json", "g.jsonl", "t.json", "t.png")
    }
    cases = [
        (["explain", preds, "--json", out["e.json"], "--html", out["r.html"]], ["e.json", "r.html"]),
        (["compare", preds, "-r", "yolov8", "-r", "yolov8:gain.cls=1", "--json", out["c.json"]], ["c.json"]),
        (
            ["scan", preds, "--no-map", "--workers", "1", "--json", out["s.json"], "--rows", out["g.jsonl"]],
            ["g.jsonl", "s.json"],
        ),
        (
            ["trend", preds, "--no-map", "--workers", "1", "--json", out["t.json"], "--plot", out["t.png"]],
            ["t.png", "t.json"],
        ),
    ]
    for args, names in cases:
        stdout, stderr = _run(*args)
        assert _announced(stderr) == [str(out[n]) for n in names], (args[0], stderr)
        assert "wrote" not in stdout, args[0]  # stdout is the report only
        assert all(out[n].is_file() for n in names)


def test_snapshot_and_check_say_wrote_on_stderr(preds, tmp_path):
    snap, report = tmp_path / "snap.json", tmp_path / "check.json"
    stdout, stderr = _run("snapshot", preds, "-o", snap)
    assert _announced(stderr) == [str(snap)] and "1 recipe(s), 2 images, 3 GT rows" in stderr and stdout == ""
    stdout, stderr = _run("check", snap, "--json", report)
    assert _announced(stderr) == [str(report)] and stdout.startswith("ok: ")


def test_json_to_stdout_announces_nothing(preds):
    stdout, stderr = _run("explain", preds, "--json", "-")
    assert stdout.lstrip().startswith("{") and "wrote" not in stderr


@pytest.mark.parametrize("command", [[], ["check"], ["validate"]])
def test_help_lists_every_exit_code(command):
    res = CliRunner().invoke(main, [*command, "--help"], env=ENV)
    assert res.exit_code == 0
    text = " ".join(res.stdout[res.stdout.index("Exit codes") :].split())
    assert re.match(r"Exit codes:? 0 .*?\b1 .*?\b2 .*?\b3 .*?\b130 ", text), text
    assert "internal error" in text and "Ctrl-C" in text
