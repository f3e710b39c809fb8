"""One way to write a class everywhere (yolodbg.class_names): ``name (id)`` from the COCO categories, a
``--names`` file (data.yaml or one name a line) or the bundle's meta.names; the id alone without names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from yolodbg.class_names import ClassNames, load_names_file, resolve, scan_doc_names
from yolodbg.cli import main
from yolodbg.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
COCO = ("--gt", "sample_data/coco_val.json")


def _cli(*args: str, columns: int = 120):
    env = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    return CliRunner().invoke(main, list(args), env=env, prog_name="yolodbg")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


# -- the label ------------------------------------------------------------------------------------------


def test_label_is_name_and_id_or_the_id_alone():
    names = ClassNames({0: 1, 1: 2}, {0: "circle", 1: "square"})
    assert [names.label(c) for c in (0, 1)] == ["circle (1)", "square (2)"]
    assert names.label(5) == "5"  # beyond what is known: the index
    assert ClassNames().label(3) == "3"
    assert ClassNames({3: 7}).label(3) == "7"  # a category id without a name
    assert ClassNames(None, {0: "a"}).labels(2) == ["a (0)", "1"]


def test_resolve_prefers_names_file_then_coco_then_meta(tmp_path):
    names_file = tmp_path / "names.txt"
    names_file.write_text("ball\nbox\npyramid\nx\n")
    coco = ROOT / "sample_data/coco_val.json"
    cats = [1, 2, 3, 7]
    meta = {"names": {0: "m0", 1: "m1", 2: "m2", 3: "m3"}}
    assert resolve(names_file=names_file, gt=coco, category_ids=cats, meta=meta).label(3) == "x (3)"
    from_coco = resolve(gt=coco, category_ids=cats, meta=meta)
    assert from_coco.label(3) == "cross (7)" and from_coco.source == "categories of coco_val.json"
    assert resolve(gt=None, category_ids=cats, meta=meta).label(3) == "m3 (7)"
    assert resolve(gt=None, category_ids=None, meta={"names": ["a", "b"]}).label(1) == "b (1)"
    assert resolve(gt=tmp_path, category_ids=cats).label(3) == "7"  # a labels folder: no names


# -- --names files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "names: [circle, square, 'tri, angle']\n",
        'path: ../data\nnames:\n  - circle\n  - square\n  - "tri, angle"\nnc: 3\n',
        "names:\n  0: circle\n  1: square   # a comment\n  2: tri, angle\n",
        "names: {0: circle, 1: square, 2: 'tri, angle'}\n",
        "train: images/train\nnames:\n- circle\n- square\n- tri, angle\n",
    ],
)
def test_data_yaml_names_in_every_form(tmp_path, text):
    p = tmp_path / "data.yaml"
    p.write_text(text)
    assert load_names_file(p) == {0: "circle", 1: "square", 2: "tri, angle"}


def test_text_names_one_a_line(tmp_path):
    p = tmp_path / "classes.txt"
    p.write_text("circle\nsquare\n\n")  # trailing blank lines are fine
    assert load_names_file(p) == {0: "circle", 1: "square"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.txt", "\n\n", "the file is empty"),
        ("gap.txt", "circle\n\nsquare\n", "line 2 is empty"),
        ("data.yaml", "nc: 3\npath: x\n", "no 'names:' list or mapping found"),
        ("bad.yaml", "names: circle\n", "no 'names:' list or mapping found"),
        ("binary.txt", b"\xff\xfe\x00bad", "cannot read it"),
    ],
)
def test_bad_names_files_say_file_field_and_fix(tmp_path, name, text, message):
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    with pytest.raises(InputError, match=message) as e:
        load_names_file(p)
    assert str(p) in str(e.value) and "--names" in str(e.value)


def test_bad_names_file_on_the_command_line_is_exit_2_before_any_work(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("nc: 4\n")
    for cmd in (
        ["explain", "sample_data/yolov8n_val.pt", *COCO],
        ["compare", "sample_data/yolov8n_val.pt", *COCO, "-r", "yolov8", "-r", "yolov8:box=giou"],
        ["scan", "sample_data/yolov8n_val.pt", *COCO, "--no-map"],
    ):
        res = _cli(*cmd, "--names", str(p))
        assert res.exit_code == 2, (cmd, res.output)
        assert res.stderr.count("\n") == 1 and "yolodbg: error: --names" in res.stderr
        assert "Traceback" not in res.output
    res = _cli("explain", "sample_data/yolov8n_val.pt", "--names", str(tmp_path / "missing.yaml"))
    assert res.exit_code == 2 and "does not exist" in res.stderr


# -- every report ------------------------------------------------------------------------------------------


def test_names_file_on_explain_console_and_json(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("names: [ball, box, pyramid, plus]\n")
    res = _cli("explain", "sample_data/yolov8n_val.pt", *COCO, "--names", str(p), "--top", "4")
    assert res.exit_code == 0, res.output
    assert f"class names from --names {p}" in res.stdout
    assert "box (1)" in res.stdout and "square" not in res.stdout  # the file's names, class index as id
    res = _cli("explain", "sample_data/yolov8n_val.pt", *COCO, "--names", str(p), "--json", "-")
    doc = json.loads(res.stdout)
    assert {(g["class"], g["class_name"]) for g in doc["gts"]} <= {
        (0, "ball"),
        (1, "box"),
        (2, "pyramid"),
        (3, "plus"),
    }
    assert all(
        n["class_name"] == ["ball", "box", "pyramid", "plus"][n["pred_class"]] for n in doc["negatives"]
    )


def test_compare_writes_classes_like_explain():
    res = _cli(
        "compare",
        "sample_data/yolov8n_val.pt",
        *COCO,
        "-r",
        "yolov8",
        "-r",
        "yolov8:assigner.topk=13",
        "--top",
        "3",
    )
    assert res.exit_code == 0, res.output
    assert "class" in res.stdout and "square (2)" in res.stdout
    assert " cls " not in res.stdout.split("GTs by change", 1)[1].splitlines()[1]


def test_scan_writes_classes_like_explain_and_records_the_names(tmp_path):
    out = tmp_path / "scan.json"
    res = _cli("scan", "sample_data/yolov8n_val.pt", *COCO, "--no-map", "--top", "3", "--json", str(out))
    assert res.exit_code == 0, res.output
    for label in ("circle (1)", "square (2)", "triangle (3)", "cross (7)"):
        assert label in res.stdout
    doc = json.loads(out.read_text())
    assert doc["class_names"] == {
        "source": "categories of coco_val.json",
        "id": "category_id",
        "by_class": {"0": "circle", "1": "square", "2": "triangle", "3": "cross"},
    }
    assert scan_doc_names(doc).label(3) == "cross (7)"
    from yolodbg.validate import validate

    assert validate(doc, "yolodbg.scan/1") == []


def test_scan_with_a_names_file_writes_class_indices(tmp_path):
    p = tmp_path / "classes.txt"
    p.write_text("ball\nbox\npyramid\nplus\n")
    out = tmp_path / "scan.json"
    res = _cli("scan", "sample_data/yolov8n_val.pt", *COCO, "--no-map", "--names", str(p), "--json", str(out))
    assert res.exit_code == 0, res.output
    assert "plus (3)" in res.stdout and "cross" not in res.stdout
    assert json.loads(out.read_text())["class_names"]["id"] == "class"


def test_scan_without_names_writes_the_category_id():
    doc = {"classes": [{"class": 3, "category_id": 7}], "class_names": None}
    assert scan_doc_names(doc).label(3) == "7"


def test_overlay_and_html_get_the_same_labels(tmp_path):
    from yolodbg import bundle
    from yolodbg.explain import explain

    ex = explain(bundle.load(ROOT / "sample_data/yolov8n_val.pt"), ROOT / "sample_data/coco_val.json", top=3)
    assert ex.class_names.labels(4) == ["circle (1)", "square (2)", "triangle (3)", "cross (7)"]
    res = _cli(
        "explain", "sample_data/yolov8n_val.pt", *COCO, "--html", str(tmp_path / "r.html"), "--top", "2"
    )
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<td>square (2)</td>" in html and "TAL align" in html
