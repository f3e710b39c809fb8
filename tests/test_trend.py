"""yolodbg trend: checkpoint grouping, plateau/divergence, GTs orphaned or high-loss throughout, the plot."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import batch, ultra_output
from PIL import Image

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.documents.trend import status
from yolodbg.scan.run import ScanJob
from yolodbg.scan.trend import checkpoints, trend

ROWS = [  # image, class, cx, cy, w, h
    [0, 0, 0.5, 0.5, 0.4, 0.4],
    [0, 1, 0.2, 0.3, 0.1, 0.1],
    [0, 1, 0.2, 0.3, 0.1, 0.1],  # planted: a duplicate label, which loses every anchor to its twin
    [1, 2, 0.6, 0.6, 0.3, 0.5],
]


def _run(tmp_path, scales, epochs=True, folder="run"):
    """One bundle (the same two images) per checkpoint; ``scales`` sets how far the logits sit from 0."""
    d = tmp_path / folder
    d.mkdir()
    for k, s in enumerate(scales):
        out = ultra_output(bs=2, size=(96, 96), nc=3, seed=0, scale=s)
        meta = {"epoch": 10 * (k + 1)} if epochs else {}
        bundle.save(
            d / f"ckpt{k}.pt",
            out,
            input_size=[96, 96],
            targets=batch(ROWS),
            images=[{"image_id": 1}, {"image_id": 2}],
            meta=meta,
        )
    return d


def test_status_by_hand():
    assert status([5.0, 4.0, 3.0, 2.0]) == "improving"  # fell by 3 over the last 3 steps
    assert status([5.0, 4.0, 3.99, 3.98, 3.97]) == "plateau"  # 4.0 -> 3.97 is 0.75% < 1%
    assert status([5.0, 2.0, 2.5]) == "diverging"  # 25% above its best, and rising
    assert status([5.0, 4.0]) == "too_short"
    assert status([0.1, 0.3, 0.5, 0.7], higher_is_better=True) == "improving"
    assert status([0.1, 0.5, 0.502, 0.503, 0.504], higher_is_better=True) == "plateau"  # +0.004 < 0.005
    assert status([0.1, 0.5, 0.3], higher_is_better=True) == "diverging"
    assert status([None, 4.0, None, 3.0, 2.0, 1.0]) == "improving"  # missing checkpoints are skipped
    assert status([4.0, 3.0, float("nan")]) == "diverging"


def test_planted_plateau_and_always_orphaned_gt(tmp_path):
    # logits move for two checkpoints, then stay put for four: every term is flat over the last 3 steps
    run = _run(tmp_path, [3.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    doc = trend([run], ScanJob())
    assert [c["label"] for c in doc["checkpoints"]] == [f"epoch {10 * k}" for k in range(1, 7)]
    for name in ("box", "cls", "dfl", "total"):
        assert doc["series"][name]["status"] == "plateau", name
    assert any(f.startswith("total: plateau") for f in doc["flags"])
    orphans = doc["always_orphaned"]
    assert [(o["image"], o["gt_index"], o["class"]) for o in orphans] == [("1", 2, 1)]
    # its twin takes its anchors (or, where no anchor scores above 0, neither gets a weighted positive)
    assert "lost_conflict" in orphans[0]["reasons"]
    assert set(orphans[0]["reasons"]) <= {"lost_conflict", "zero_metric"}
    assert orphans[0]["num_pos"] == [0] * 6
    assert doc["series"]["total"]["values"][0] != doc["series"]["total"]["values"][2]  # it did move first
    assert doc["series"]["AP"]["values"][0] is not None


def test_planted_divergence(tmp_path):
    run = _run(tmp_path, [1.0, 1.0, 1.0, 4.0])  # confident wrong logits at the last checkpoint
    doc = trend([run], ScanJob(evaluate=False))
    assert doc["series"]["cls"]["status"] == "diverging"
    assert "AP" not in doc["series"]


def test_checkpoint_grouping_without_epochs(tmp_path):
    one = _run(tmp_path, [1.0, 2.0], epochs=False, folder="a")
    two = _run(tmp_path, [1.0, 2.0], epochs=False, folder="b")
    assert [c.label for c in checkpoints([one])] == ["ckpt0.pt", "ckpt1.pt"]  # one folder: each file
    cps = checkpoints([one, two])  # several folders: each folder
    assert [len(c.paths) for c in cps] == [2, 2] and cps[0].label == str(one)


def test_always_high_loss_is_in_the_top_decile_everywhere(tmp_path):
    run = _run(tmp_path, [1.0, 1.0])
    doc = trend([run], ScanJob(evaluate=False), window=1)
    high = doc["always_high_loss"]
    assert len(high) >= 1
    for c in range(2):  # each listed GT has the largest loss of its checkpoint here (8 GTs: top decile = max)
        assert high[0]["loss"][c] == max(g["loss"][c] for g in [*high, *doc["always_orphaned"]])


def test_cli_trend_json_and_plot(tmp_path):
    run = _run(tmp_path, [2.0, 1.0, 1.0, 1.0])
    png = tmp_path / "trend.png"
    res = CliRunner().invoke(main, ["trend", str(run), "--plot", str(png), "--json", "-", "--no-map"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "yolodbg.trend/1" and len(doc["checkpoints"]) == 4
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] == 900
    res = CliRunner().invoke(main, ["trend", str(run), "--no-map"])
    assert (
        res.exit_code == 0
        and "Trajectories" in res.output
        and "no positive at every checkpoint" in res.output
    )


@pytest.mark.parametrize("bad", ["missing_dir"])
def test_cli_trend_bad_input(tmp_path, bad):
    res = CliRunner().invoke(main, ["trend", str(tmp_path / bad)])
    assert res.exit_code == 2 and "no such file" in res.output
