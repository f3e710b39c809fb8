"""Snapshots: write → check passes; drift is named; damaged files are clear errors; bytes are stable."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import assert_valid, batch, ultra_output

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.testing import assert_loss_snapshot

ROWS = [(0, 1, 0.5, 0.5, 0.4, 0.3), (0, 2, 0.2, 0.3, 0.1, 0.2), (1, 0, 0.7, 0.6, 0.3, 0.5)]


@pytest.fixture
def runner():
    return CliRunner()


def _preds(tmp_path, name="p.pt", out=None):
    out = out or ultra_output(bs=2, size=(96, 128), nc=3, seed=11)
    images = [{"image_id": 7}, {"image_id": 9}]
    return bundle.save(tmp_path / name, out, targets=batch(ROWS), images=images, overwrite=True)


def _snap(runner, preds, snap, *extra):
    res = runner.invoke(main, ["snapshot", str(preds), "-o", str(snap), *extra])
    assert res.exit_code == 0, res.output
    return snap


def test_snapshot_then_check_passes(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json", "-r", "yolov8", "-r", "yolov8:assigner.topk=13")
    doc = json.loads(snap.read_text())
    assert doc["schema"] == "yolodbg.snapshot/1" and len(doc["recipes"]) == 2
    assert doc["recipes"][0]["params"]["assigner.topk"] == 10 and len(doc["recipes"][0]["gts"]) == 3
    res = runner.invoke(main, ["check", str(snap)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ok:")


def test_snapshot_bytes_are_deterministic(runner, tmp_path):
    preds = _preds(tmp_path)
    a = _snap(runner, preds, tmp_path / "a.json").read_bytes()
    b = _snap(runner, preds, tmp_path / "a.json", "--update").read_bytes()
    assert a == b


def test_refuses_to_overwrite(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json")
    before = snap.read_bytes()
    res = runner.invoke(main, ["snapshot", str(preds), "-o", str(snap)])
    assert res.exit_code == 2 and "--update" in res.stderr and snap.read_bytes() == before


def test_perturbed_positive_logit_fails_and_names_the_gt(runner, tmp_path):
    out = ultra_output(bs=2, size=(96, 128), nc=3, seed=11)
    preds = _preds(tmp_path, out=out)
    snap = _snap(runner, preds, tmp_path / "s.json")
    doc = json.loads(snap.read_text())
    g = next(g for g in doc["recipes"][0]["gts"] if g["image_index"] == 1)
    anchor = g["positives"][0]
    out2 = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in out.items()}
    out2["scores"][1, 0, anchor] += 0.5  # one class logit of one positive of image 9's GT
    other = _preds(tmp_path, "q.pt", out=out2)
    res = runner.invoke(main, ["check", str(snap), str(other), "--allow-changed-inputs"])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert any("term cls moved" in ln for ln in lines)
    # every GT shares the batch normaliser, so all move a little; the perturbed one is listed first
    first = next(i for i, ln in enumerate(lines) if ": image " in ln)
    assert lines[first] == "  yolov8: image 9 gt 0"
    assert any(ln.startswith("    cls ") for ln in lines[first + 1 : first + 5])  # its moved terms, indented


def test_changed_inputs_are_exit_2_unless_allowed(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json")
    other = _preds(tmp_path, "q.pt", out=ultra_output(bs=2, size=(96, 128), nc=3, seed=12))
    res = runner.invoke(main, ["check", str(snap), str(other)])
    assert res.exit_code == 2 and "--allow-changed-inputs" in res.stderr


def test_changed_parameter_is_named(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json", "-r", "yolov8")
    res = runner.invoke(main, ["check", str(snap), "-r", "yolov8:assigner.topk=13", "--format", "github"])
    assert res.exit_code == 1
    assert "parameter assigner.topk changed: snapshot 10, now 13" in res.output
    assert "::error file=" in res.output


def test_json_report(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json")
    res = runner.invoke(main, ["check", str(snap), "--json", "-"])
    assert res.exit_code == 0
    report = json.loads(res.stdout)
    assert report["schema"] == "yolodbg.check/1" and report["ok"] is True


def test_json_report_of_changed_positives_is_valid_json(runner, tmp_path):
    """A GT whose positives changed has no finite 'how far' score: null in the report, never Infinity."""
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json", "-r", "yolov8:assigner.topk=13")
    res = runner.invoke(main, ["check", str(snap), "-r", "yolov8:assigner.topk=3", "--json", "-"])
    assert res.exit_code == 1
    report = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the check report"))
    moved = [g for g in report["gts"] if "positives" in g["change"]]
    assert moved and all(g["score"] is None for g in moved)
    assert_valid(report, "yolodbg.check/1")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda text: text[: len(text) // 2], "truncated"),
        (
            lambda text: text.replace('"schema": "yolodbg.snapshot/1"', '"schema": "other"'),
            "schema is 'other'",
        ),
        (lambda text: text.replace('"positives"', '"positivez"'), "positives missing"),
        (
            lambda text: text.replace('"objective": ', '"objective": "x", "_": '),
            "objective is missing or malformed",
        ),
    ],
)
def test_damaged_snapshot_is_a_clear_error(runner, tmp_path, mutate, needle):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json")
    snap.write_text(mutate(snap.read_text()))
    res = runner.invoke(main, ["check", str(snap)])
    assert res.exit_code == 2 and needle in res.stderr and "Traceback" not in res.output


def test_missing_bundle_is_exit_2(runner, tmp_path):
    preds = _preds(tmp_path)
    snap = _snap(runner, preds, tmp_path / "s.json")
    preds.unlink()
    res = runner.invoke(main, ["check", str(snap)])
    assert res.exit_code == 2 and "missing" in res.stderr


def test_pytest_helper(tmp_path, monkeypatch):
    preds = _preds(tmp_path)
    path = tmp_path / "snap.json"
    assert_loss_snapshot(preds, None, "yolov8", path)  # first run writes
    assert_loss_snapshot(preds, None, "yolov8", path)  # second run compares
    with pytest.raises(AssertionError, match=r"parameter gain\.cls changed"):
        assert_loss_snapshot(preds, None, "yolov8:gain.cls=0.6", path)
    monkeypatch.setenv("YOLODBG_UPDATE_SNAPSHOTS", "1")
    assert_loss_snapshot(preds, None, "yolov8:gain.cls=0.6", path)  # accepted
    monkeypatch.delenv("YOLODBG_UPDATE_SNAPSHOTS")
    assert_loss_snapshot(preds, None, "yolov8:gain.cls=0.6", path)
