"""The ``explain`` console report reads whole at any width: pinned at 80 and 120 columns for every sample
bundle, no value cut (no ``…``, no line past the width), one meaning per column name, one notation per
column, ``--wide``, ``--image`` ranking its own anchors, and classes written ``name (id)``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from yolodbg.cli import main

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


L = _load("explain_layout_cases", HERE / "explain_layout" / "explain_layout_cases.py")
C = _load("cli_output_cases", HERE / "cli_outputs" / "cli_output_cases.py")  # its text/number comparison


def _cli(*args: str, columns: int = 80):
    env = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    return CliRunner().invoke(main, list(args), env=env, prog_name="yolodbg")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_every_case_is_recorded():
    recorded = {p.stem for p in L.EXPECTED.glob("*.txt")}
    assert recorded == {f"{c}_w{w}" for c in L.CASES for w in L.WIDTHS}, (
        "re-record with: python tests/explain_layout/explain_layout_cases.py --update"
    )


@pytest.mark.parametrize("width", L.WIDTHS)
@pytest.mark.parametrize("case", list(L.CASES))
def test_report_is_pinned(case, width):
    expected = (L.EXPECTED / f"{case}_w{width}.txt").read_text(encoding="utf-8")
    problems = list(C.differences(expected, L.render(case, width)))
    assert not problems, f"{case} at {width}: " + "\n".join(problems[:10])


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("case", list(L.CASES))
def test_no_value_is_cut_and_no_line_is_wider_than_the_console(case, width):
    for image in (None, 0):
        text = L.render(case, width, image=image)
        lines = text.splitlines()
        assert not [ln for ln in lines if "…" in ln], f"{case} at {width}: a cell was cut"
        too_wide = [ln for ln in lines if len(ln) > width]
        assert not too_wide, f"{case} at {width}: {too_wide[:3]}"


def _table_headers(text: str) -> list[list[str]]:
    """The header row of each table: the line after a bold title line that starts a table."""
    lines = text.splitlines()
    return [
        re.split(r"\s{2,}", lines[i + 1].strip())
        for i, ln in enumerate(lines[:-1])
        if ln.startswith(("Ground-truth boxes", "Background anchors", "Images by loss"))
        and lines[i + 1].strip()
    ]


@pytest.mark.parametrize("case", list(L.CASES))
def test_one_meaning_per_column_name(case):
    text = L.render(case, 200, wide=True)
    headers = _table_headers(text)
    assert len(headers) == 3
    for names in headers:
        assert len(names) == len(set(names)), names
    gt_header = headers[1]
    assert "class" in gt_header and gt_header.count("cls") <= 1  # the class, and at most the cls loss
    assert "align" not in gt_header  # named for its recipe: TAL align, anchor ratio, SimOTA cost (or none)


@pytest.mark.parametrize(
    ("case", "header", "legend"),
    [
        ("yolov8n_val", "TAL align", "higher is better"),
        ("yolov5n_val", "anchor ratio", "lower is better"),
        ("yolox_val", "SimOTA cost", "lower is better"),
    ],
)
def test_the_assigner_column_is_named_for_its_recipe(case, header, legend):
    text = L.render(case, 200)
    assert header in _table_headers(text)[1]
    assert f"{header} = mean" in text and legend in text


def test_yolov1_has_no_align_column_beside_the_identical_iou():
    assert "IoU" in _table_headers(L.render("yolov1_val", 200))[1]
    assert not any("align" in h for h in _table_headers(L.render("yolov1_val", 200))[1])


def test_narrow_report_names_the_columns_it_left_out_and_wide_shows_them():
    narrow = L.render("yolov8n_val", 80)
    assert "not shown at 80 columns: ann, w×h px, IoU, TAL align (--wide shows them)" in narrow
    wide = L.render("yolov8n_val", 80, wide=True)
    assert "not shown" not in wide
    gt_header = _table_headers(wide)[1]
    assert gt_header[:7] == ["image", "gt", "ann", "class", "w×h px", "pos", "IoU"]
    assert max(len(ln) for ln in wide.splitlines()) > 80  # printed whole, past the width, not cropped
    assert "…" not in wide


def test_wide_on_the_command_line():
    res = _cli("explain", "sample_data/yolox_val.pt", "--gt", L.COCO, "--top", "3", "--wide")
    assert res.exit_code == 0, res.output
    assert "SimOTA cost" in res.stdout and "w×h px" in res.stdout and "not shown" not in res.stdout


def test_reason_details_go_on_indented_lines_under_the_table():
    text = L.render("yolox_val", 80)
    why = text.split("why (image/gt):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert why[0].startswith("  3/4 dynamic_k: k = 8 (")
    assert all(ln.startswith("  ") for ln in why)
    continuation = [ln for ln in why if not re.match(r"  \d+/\d+ ", ln)]
    assert continuation and all(
        ln.startswith(" " * 6) for ln in continuation
    )  # hanging indent under the text
    assert "outside_prior: k = 5" in text


def test_lost_conflict_names_its_winner_on_its_own_line():
    """The code fits the table's why column; the sentence naming the winner goes under the table, whole."""
    import dataclasses
    import io

    from rich.console import Console

    from yolodbg.render.console import gt_columns, gt_legend
    from yolodbg.result import GtReason

    ex = L.explanation("yolov8n_val")
    detail = "all 10 anchors it selected went to GT 3 of image 1 (ann 4), whose CIoU with them is larger"
    g = dataclasses.replace(ex.breakdown.gts[0], reason=GtReason("lost_conflict", detail, other_gt=3))
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    assert "lost_conflict" in [c.plain for c in gt_columns(ex, [g])[-1].cells]
    for part in gt_legend(console, ex, [g], []):
        console.print(part)
    lines = console.export_text().splitlines()
    assert lines[0] == "why (image/gt):"
    body = " ".join(ln.strip() for ln in lines[1:])
    assert (
        body.startswith(f"1/{g.gt_index} lost_conflict: all 10 anchors") and "GT 3 of image 1 (ann 4)" in body
    )
    assert max(len(ln) for ln in lines) <= 80 and len(lines) > 2


def test_image_focus_ranks_the_images_own_background_anchors():
    """The empty image's loss is all background: focused, it lists its own costliest anchors, not 'top 0'."""
    res = _cli(
        "explain", "sample_data/yolov8n_val.pt", "--gt", L.COCO, "--image", "4", "--top", "3", columns=120
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "focus: image 4 (val_003.jpg) · loss 0.0134, 0.6% of the batch · 0 GTs · 0 positive anchors" in out
    assert "Ground-truth boxes of image 4 by contribution (0 of 0)" in out
    assert "Background anchors of image 4 by contribution (top 3)" in out
    rows = out.split("Background anchors of image 4 by contribution (top 3)\n", 1)[1].splitlines()[1:4]
    assert [r.split()[0] for r in rows] == ["4", "4", "4"]


def test_focused_negatives_are_the_images_top_k_of_its_own_background():
    """Ranked within the image: the focused list is the top K of that image's background elements, summed
    over the logged terms straight from the ledger (not the batch-wide top K filtered to the image)."""
    import torch

    from yolodbg import bundle
    from yolodbg.explain import explain

    b = bundle.load(ROOT / "sample_data/yolov8n_val.pt")
    res = explain(b, ROOT / L.COCO, top=0).result
    n = res.fg.shape[1]
    bg = sum(
        res.ledger[t].on_grid(res.ledger[t].values * (res.ledger[t].gt < 0), b.batch_size, n)
        for t in res.terms
    )
    for image in range(b.batch_size):
        focused = explain(b, ROOT / L.COCO, top=5, focus=image).breakdown.negatives
        expected = torch.topk(bg[image], 5)
        assert [x.image_index for x in focused] == [image] * 5
        assert [x.contribution for x in focused] == pytest.approx(expected.values.tolist(), rel=1e-9)


def test_images_table_gives_each_images_loss_and_share():
    text = L.render("yolov8n_val", 80)
    table = text.split("Images by loss (4 of 4; share of the batch total)\n", 1)[1].split("\n\n", 1)[0]
    rows = {ln.split()[0]: ln.split() for ln in table.splitlines()[1:]}
    assert rows["4"][1:] == ["0", "0", "0.0134", "0.6%", "0.0134"]  # no GTs: all of its loss is background
    shares = [float(r[4].rstrip("%")) for r in rows.values()]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)


def test_a_background_anchor_that_overlaps_no_gt_names_none(tmp_path):
    from yolodbg.validate import validate

    res = _cli("explain", "sample_data/yolov8n_val.pt", "--gt", L.COCO, "--json", "-")
    doc = json.loads(res.stdout)
    negatives = doc["negatives"]
    assert any(n["best_iou"] == 0 for n in negatives)
    for n in negatives:
        assert (n["best_gt"] is None) == (n["best_iou"] <= 0), n
        assert (n["best_gt_index"] is None) == (n["best_gt"] is None)
    assert validate(doc, "yolodbg.explain/1") == []
    bad = next(n for n in negatives if n["best_gt"] is None)
    bad["best_gt"], bad["best_gt_index"] = 0, 0
    problems = validate(doc, "yolodbg.explain/1")
    assert any("best_gt" in p and "overlaps no GT" in p for p in problems), problems


def test_classes_are_written_name_and_id_everywhere_in_the_report():
    text = L.render("yolov8n_val", 120)
    assert "class names from categories of coco_val.json" in text
    for label in ("circle (1)", "square (2)", "triangle (3)", "cross (7)"):
        assert label in text
    bare = L.render("yolov8n_train_step", 120)  # no names anywhere: the category id alone
    assert "class names from" not in bare
    gt_rows = bare.split("Ground-truth boxes by contribution (8 of 8)\n", 1)[1].splitlines()[1:9]
    assert sorted({r.split()[2] for r in gt_rows}) == ["1", "2", "3", "7"]  # ann is blank: no COCO ids


@pytest.mark.parametrize("case", list(L.CASES))
def test_json_keeps_its_fields_and_adds_class_name(case):
    from yolodbg.documents.explain import explain_doc

    ex = L.explanation(case)
    doc = explain_doc(ex)
    for g in doc["gts"]:
        assert {"class", "category_id", "class_name"} <= set(g)
    expected = None if L.CASES[case][1] is None else {"circle", "square", "triangle", "cross"}
    names = {g["class_name"] for g in doc["gts"]}
    assert names == ({None} if expected is None else expected)


# -- one notation per column ------------------------------------------------------------------------
