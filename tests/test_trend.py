"""yolodbg trend: checkpoint grouping, plateau/divergence, GTs orphaned or high-loss throughout, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import batch, ultra_output
from PIL import Image

from yolodbg import bundle
from yolodbg.cli import main
from yolodbg.render.trend_plot import choose_series, plot_trend, shared_scales
from yolodbg.scan.run import ScanJob
from yolodbg.scan.status import DIVERGE_AP, DIVERGE_REL, PLATEAU_AP, PLATEAU_REL, rule_text, status
from yolodbg.scan.trend import checkpoints, trend, unique_suffixes

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
    assert [len(c.paths) for c in cps] == [2, 2] and [c.label for c in cps] == ["a", "b"]


def test_checkpoint_labels_are_the_shortest_distinct_ends_of_their_paths(tmp_path):
    """Two runs' ``epoch0`` folders are told apart by the folder above (not shown twice as ``epoch0``),
    and files of one name in two subfolders by theirs."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = _run(tmp_path / "x", [1.0], epochs=False, folder="epoch0")
    b = _run(tmp_path / "y", [1.0], epochs=False, folder="epoch0")
    c = _run(tmp_path / "y", [1.0], epochs=False, folder="epoch1")
    assert [cp.label for cp in checkpoints([a, b, c])] == ["x/epoch0", "y/epoch0", "epoch1"]
    assert [cp.label for cp in checkpoints([tmp_path])] == [
        "x/epoch0/ckpt0.pt",
        "y/epoch0/ckpt0.pt",
        "epoch1/ckpt0.pt",
    ]
    assert unique_suffixes(["r/e0", "r/e0"]) == ["r/e0", "r/e0 #2"]  # the same folder twice: still distinct


@pytest.mark.parametrize(
    "values, higher, expected",
    [  # exactly at each threshold and just past it
        ([1.0, 1.0 + DIVERGE_REL * 0.99], False, "too_short"),  # worse, but by less than the threshold
        ([1.0, 1.0 + DIVERGE_REL * 1.01], False, "diverging"),
        ([0.5, 0.5 - DIVERGE_AP * 0.99], True, "too_short"),
        ([0.5, 0.5 - DIVERGE_AP * 1.01], True, "diverging"),
        ([0.8, 0.8 - DIVERGE_AP * 1.01], True, "diverging"),  # absolute for AP: 0.01 below 0.8 (1.3 %)
        ([1.0, 1.0, 1.0, 1.0 - PLATEAU_REL * 0.99], False, "plateau"),
        ([1.0, 1.0, 1.0, 1.0 - PLATEAU_REL * 1.01], False, "improving"),
        ([0.5, 0.5, 0.5, 0.5 + PLATEAU_AP * 0.99], True, "plateau"),
        ([0.5, 0.5, 0.5, 0.5 + PLATEAU_AP * 1.01], True, "improving"),
    ],
)
def test_thresholds_are_the_ones_help_and_docs_state(values, higher, expected):
    assert status(values, higher, window=3) == expected
    rule = rule_text()
    assert f"{DIVERGE_REL:.0%} for a loss ({DIVERGE_AP:g} absolute for AP)" in rule
    assert f"{PLATEAU_REL:.0%} for a loss ({PLATEAU_AP:g} absolute for AP)" in rule
    help_text = " ".join(CliRunner().invoke(main, ["trend", "--help"], env={"COLUMNS": "400"}).output.split())
    assert rule in help_text
    docs = " ".join((Path(__file__).parents[1] / "docs" / "scan.md").read_text(encoding="utf-8").split())
    assert (
        "more than 10 % for a loss (AP: 0.01 absolute)" in docs and DIVERGE_REL == 0.10 and DIVERGE_AP == 0.01
    )
    assert (
        "less than 1 % for a loss (AP: 0.005 absolute)" in docs
        and PLATEAU_REL == 0.01
        and PLATEAU_AP == 0.005
    )


def _series(n_classes: int) -> dict:
    series = {n: {"values": [1.0, 0.5], "status": "improving"} for n in ("box", "cls", "total", "AP")}
    for c in range(n_classes):
        series[f"class {c} loss/GT"] = {"values": [1.0, 0.1 * c], "status": "improving"}
        series[f"class {c} AP"] = {"values": [0.2, 0.3], "status": "improving"}
    return series


def test_plot_draws_every_class_or_says_which_it_drew():
    names, note = choose_series(_series(3))
    assert names == list(_series(3)) and note == "all 3 classes"
    names, note = choose_series(_series(40))  # 4 + 80 panels: the classes with the highest last loss/GT
    assert note == "top 10 of 40 classes by last loss/GT" and len(names) == 4 + 20
    assert [n for n in names if n.endswith("loss/GT")] == [f"class {c} loss/GT" for c in range(30, 40)]


def test_shared_scale_gives_one_range_per_unit(tmp_path):
    series = _series(2)
    scales = shared_scales(series, list(series))
    assert scales == {"loss": (0.5, 1.0), "AP": (0.2, 1.0), "loss/GT": (0.0, 1.0)}
    doc = {"series": series, "checkpoints": [{"label": "a/epoch0"}, {"label": "b/epoch0"}]}
    for shared in (False, True):
        with Image.open(plot_trend(doc, tmp_path / f"t{shared}.png", shared_scale=shared)) as im:
            assert im.format == "PNG" and im.size == (900, 3 * 190 + 24)


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
