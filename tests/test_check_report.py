"""yolodbg check reads like a diff: top K per kind, the normaliser label only when it moved, paths
relative to the snapshot file (old cwd-relative and absolute snapshots still work), snapshot --update."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner
from helpers import ultra_output
from test_snapshot import _preds, _snap

from yolodbg import snapshot as snap
from yolodbg.cli import main
from yolodbg.render.check import drift_report


def _doc(gt_terms: list[dict[str, float]]) -> dict:
    """A minimal snapshot document: one recipe, one image, one GT per entry of ``gt_terms``."""
    gts = [
        {"image_index": 0, "gt_index": i, "ann_id": 10 + i, "positives": [i], "terms": dict(t)}
        for i, t in enumerate(gt_terms)
    ]
    total = {k: sum(t[k] for t in gt_terms) for k in gt_terms[0]}
    return {
        "recipes": [
            {
                "spec": "yolov8",
                "name": "yolov8",
                "params": {},
                "objective": 1.0,
                "terms": total,
                "images": [{"index": 0, "image_id": 5}],
                "gts": gts,
            }
        ]
    }


GTS = [{"box": 0.1 * (i + 1), "cls": 0.05 * (i + 1)} for i in range(5)]


def test_every_gt_scaled_by_the_normaliser_is_labelled_so():
    new = _doc([{k: v * 1.05 for k, v in t.items()} for t in GTS])  # the normaliser shrank by 1/1.05
    drift = snap.diff(_doc(GTS), new, rtol=1e-5, atol=1e-7)
    assert len(drift.gts) == 5 and all(g["normaliser_only"] for g in drift.gts)
    assert all(g["change"].endswith("only the batch-wide normaliser moved") for g in drift.gts)


def test_a_gt_that_moved_alone_is_not_blamed_on_the_normaliser():
    """Moved by 5e-5 (beyond rtol 1e-5, below the 10 × rtol the label allowed) while every other GT
    and so the normaliser stayed put: before, it was labelled 'only the batch-wide normaliser moved'."""
    moved = copy.deepcopy(GTS)
    moved[2]["box"] *= 1 + 5e-5
    drift = snap.diff(_doc(GTS), _doc(moved), rtol=1e-5, atol=1e-7)
    assert [(g["gt"], g["normaliser_only"]) for g in drift.gts] == [("image 5 ann 12", False)]
    assert "normaliser" not in drift.gts[0]["change"]
    assert drift.gts[0]["terms_moved"][0]["term"] == "box"
    text = "\n".join(drift_report(drift, "s.json", 1e-5, 1e-7, top=5, width=80))
    assert "image 5 ann 12\n    box 0.3 → 0.300015 (+0.01%)" in text and "normaliser" not in text


def test_top_limits_each_kind_and_says_how_many_more():
    new = _doc([{k: v * 1.5 for k, v in t.items()} for t in GTS])
    drift = snap.diff(_doc(GTS), new, rtol=1e-5, atol=1e-7)
    lines = drift_report(drift, "s.json", 1e-5, 1e-7, top=1, width=80)
    assert lines[0] == "DRIFT in s.json: 2 terms, 5 GTs changed (rtol 1e-05, atol 1e-07)"
    assert "  and 4 more (raise --top, or see them all with --json)" in lines  # GTs
    assert "  and 1 more (raise --top, or see them all with --json)" in lines  # terms: box, cls
    assert sum(line.startswith("  yolov8: image") for line in lines) == 1
    assert all(len(line) <= 80 for line in lines)


@pytest.fixture
def runner():
    return CliRunner()


def test_check_finds_the_inputs_from_another_folder(runner, tmp_path, monkeypatch):
    """A snapshot written with relative paths records them relative to itself: check runs from anywhere."""
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    preds = _preds(tmp_path / "data").relative_to(tmp_path)
    s = _snap(runner, preds, "tests/snaps/s.json")
    doc = json.loads((tmp_path / s).read_text())
    assert doc["inputs"]["bundle"]["path"] == "../../data/p.pt"
    assert doc["inputs"]["paths_relative_to"] == "snapshot"
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = runner.invoke(main, ["check", "../tests/snaps/s.json"])
    assert res.exit_code == 0 and res.output.startswith("ok:"), res.output


def test_old_snapshots_without_the_marker_still_resolve_from_the_working_directory(
    runner, tmp_path, monkeypatch
):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    preds = _preds(tmp_path / "data")
    s = _snap(runner, preds, tmp_path / "snaps" / "s.json")
    doc = json.loads(s.read_text())
    del doc["inputs"]["paths_relative_to"]  # as written before paths were recorded relative to the snapshot
    doc["inputs"]["bundle"]["path"] = "data/p.pt"  # relative to the working directory it was written from
    s.write_text(snap.dumps(doc))
    assert runner.invoke(main, ["check", str(s)]).exit_code == 0
    monkeypatch.chdir(tmp_path / "snaps")  # from elsewhere an old relative path is not found: one clear line
    res = runner.invoke(main, ["check", "s.json"])
    assert (
        res.exit_code == 2 and "bundle data/p.pt is missing" in res.stderr and "Traceback" not in res.output
    )
    doc["inputs"]["bundle"]["path"] = str(preds.resolve())  # absolute: found from anywhere
    s.write_text(snap.dumps(doc))
    assert runner.invoke(main, ["check", "s.json"]).exit_code == 0


def test_an_absolute_path_stays_absolute(runner, tmp_path):
    preds = _preds(tmp_path).resolve()
    s = _snap(runner, preds, tmp_path / "snaps" / "s.json")
    assert json.loads(s.read_text())["inputs"]["bundle"]["path"] == str(preds)


def test_drift_suggests_the_option_that_exists(runner, tmp_path):
    preds = _preds(tmp_path)
    s = _snap(runner, preds, tmp_path / "s.json")
    res = runner.invoke(main, ["check", str(s), "-r", "yolov8:assigner.topk=1", "--top", "1"])
    assert res.exit_code == 1
    assert (
        "yolodbg snapshot" in res.output and "--update" in res.output and "check --update" not in res.output
    )
    command = res.output.split("accept the new numbers with:\n")[1].replace(" \\\n", " ")
    assert " ".join(command.split()).endswith(f"-r yolov8:assigner.topk=1 -o {s} --update")
    assert "and " in res.output and "more (raise --top" in res.output
    other = _preds(tmp_path, name="q.pt", out=ultra_output(bs=2, size=(96, 128), nc=3, seed=12))
    res = runner.invoke(main, ["check", str(s), str(other)])  # another bundle: its digest differs
    assert res.exit_code == 2 and "--allow-changed-inputs" in res.stderr
    assert f"yolodbg snapshot PREDS -o {s} --update" in res.stderr and "check --update" not in res.stderr
