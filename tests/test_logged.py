"""``explain`` on a bundle that carries the trainer's logged loss_items: side by side, exit 1 beyond rel 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from yolodbg.cli import main

STEP = Path(__file__).resolve().parents[1] / "sample_data" / "yolov8n_train_step.pt"


def _with_items(tmp_path, change):
    doc = torch.load(STEP, weights_only=True)
    change(doc["meta"])
    path = tmp_path / "step.pt"
    torch.save(doc, path)
    return path


def _explain(path, *extra):
    return CliRunner().invoke(main, ["explain", str(path), "--top", "0", *extra], env={"COLUMNS": "160"})


def test_a_replay_that_matches_the_log_prints_both_and_passes():
    res = _explain(STEP)
    assert res.exit_code == 0, res.output
    assert "Replay vs logged" in res.stdout
    for name in ("box_loss → box", "cls_loss → cls", "dfl_loss → dfl"):
        assert name in res.stdout
    doc = json.loads(_explain(STEP, "--json", "-").stdout)
    logged = torch.load(STEP, weights_only=True)["meta"]["loss_items"]
    items = {i["name"]: i for i in doc["logged"]["items"]}
    assert doc["logged"]["checked"] and doc["logged"]["agree"] and doc["logged"]["rtol"] == 1e-5
    assert logged, "the sample step logged no loss items"
    for name, value in logged.items():
        term = name.removesuffix("_loss")
        assert items[name]["term"] == term and items[name]["logged"] == value
        assert items[name]["replay"] == doc["terms"][term]
        assert items[name]["rel_diff"] <= 1e-5


def _bump(meta):
    meta["loss_items"]["cls_loss"] *= 1.001


def test_a_replay_that_differs_from_the_log_exits_1_naming_the_item(tmp_path):
    path = _with_items(tmp_path, _bump)
    res = _explain(path)
    assert res.exit_code == 1, res.output
    line = " ".join(res.stderr.split())
    assert (
        "replay differs from the logged loss" in line and "cls_loss logged" in line and "box_loss" not in line
    )
    assert "differs > 1e-05" in res.stdout
    res = _explain(path, "--json", "-")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    cls = next(i for i in doc["logged"]["items"] if i["name"] == "cls_loss")
    assert cls["rel_diff"] == pytest.approx(1e-3, rel=1e-2) and doc["logged"]["agree"] is False


def test_a_variant_recipe_shows_the_log_but_is_not_held_to_it(tmp_path):
    res = _explain(_with_items(tmp_path, _bump), "-r", "yolov8:gain.cls=1.0")
    assert res.exit_code == 0, res.output
    assert "variant recipe: not checked" in res.stdout


def test_logged_items_without_a_term_are_listed_not_failed(tmp_path):
    path = _with_items(tmp_path, lambda m: m["loss_items"].update({"seg_loss": 0.5}))
    res = _explain(path)
    assert res.exit_code == 0, res.output
    assert "no such term" in res.stdout


@pytest.mark.parametrize(
    ("items", "needle"),
    [([1.0, 2.0], "meta.loss_items is list"), ({"box_loss": "high"}, "meta.loss_items['box_loss']")],
)
def test_malformed_loss_items_are_refused(tmp_path, items, needle):
    res = _explain(_with_items(tmp_path, lambda m: m.update({"loss_items": items})))
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_bundles_without_logged_items_have_no_table():
    res = _explain(STEP.parent / "yolov8n_val.pt", "--gt", str(STEP.parent / "coco_val.json"))
    assert res.exit_code == 0 and "Replay vs logged" not in res.stdout
