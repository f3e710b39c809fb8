"""``yolodbg audit`` on the command line: outputs, options, 80 columns, Ctrl-C, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from yolodbg.audit.run import AuditJob, drive
from yolodbg.cli import main
from yolodbg.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
BUNDLE = SAMPLE / "yolov8n_val.pt"
COCO = SAMPLE / "coco_val.json"


def _invoke(*args, env=None):
    return CliRunner().invoke(main, ["audit", *[str(a) for a in args]], env=env)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """The sample labels with a class swapped (ann 4) and a box dropped (ann 9)."""
    data = json.loads(COCO.read_text())
    next(a for a in data["annotations"] if a["id"] == 4)["category_id"] = 2
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 9]
    p = tmp_path_factory.mktemp("audit") / "noisy.json"
    p.write_text(json.dumps(data))
    return p


@pytest.fixture(scope="module")
def outputs(noisy, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("out")
    res = _invoke(
        BUNDLE, "--gt", noisy, "--workers", "1", "--json", out / "a.json", "--rows", out / "rows.jsonl",
        "--html", out / "a.html", "--suggest", out / "fixed.json", "--top", "5",
    )  # fmt: skip
    assert res.exit_code == 0, (res.stderr, res.exception)
    return out, res


def test_json_is_a_valid_audit_document(outputs):
    out, _ = outputs
    doc = json.loads((out / "a.json").read_text())
    assert validate(doc, "yolodbg.audit/1") == []
    assert [x["type"] for x in doc["issues"][:2]] == ["wrong_class", "missing_label"]
    assert len(doc["issues"]) > 5  # the JSON holds every issue; --top cuts the console and the page


def test_rows_hold_one_line_per_gt_with_its_evidence(outputs):
    out, _ = outputs
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 26
    assert {"own_score", "other_score", "support"} <= set(rows[0]["evidence"])
    assert all(r["loss_share"] is not None for r in rows)


def test_html_is_one_page_with_a_crop_per_suspect(outputs):
    out, _ = outputs
    page = (out / "a.html").read_text()
    assert page.count('class="issue"') == 5 and page.count("data:image/png;base64,") == 5
    assert '<button data-type="wrong_class"' in page and "http" not in page.split("<body>")[1]


def test_suggest_writes_a_corrected_copy_and_marks_every_change(outputs, noisy):
    out, res = outputs
    fixed = json.loads((out / "fixed.json").read_text())
    changed = {a["id"]: a for a in fixed["annotations"] if "yolodbg_audit" in a}
    assert changed[4]["category_id"] == 1 and changed[4]["yolodbg_audit"]["old_category_id"] == 2
    added = [a for a in changed.values() if a["id"] > 28]
    assert len(added) == 1 and added[0]["category_id"] == 1
    assert all(a["yolodbg_audit"]["issue"].startswith("A") for a in changed.values())
    assert json.loads(noisy.read_text()) != fixed  # the input is untouched (a copy was changed)
    assert "wrote" in res.stderr and "1 changed, 1 added" in res.stderr


def test_console_fits_80_columns_without_cutting_a_value(noisy):
    res = _invoke(BUNDLE, "--gt", noisy, "--workers", "1", "--top", "6", env={"COLUMNS": "80"})
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in res.stdout
    assert "A0001  wrong_class" in res.stdout and "suggested" not in res.stdout
    assert (
        "square (2)" in res.stdout and "circle (1)" in res.stdout
    )  # name (COCO category id), as every report


def test_json_to_stdout_only(noisy):
    res = _invoke(BUNDLE, "--gt", noisy, "--workers", "1", "--json", "-")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["schema"] == "yolodbg.audit/1"


def test_names_file_names_the_classes(noisy, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("disc\nbox\ntri\nplus\n")
    res = _invoke(BUNDLE, "--gt", noisy, "--workers", "1", "--names", names, "--json", "-")
    doc = json.loads(res.stdout)
    assert doc["issues"][0]["class_name"] == "box (1)" and doc["names"] == ["disc", "box", "tri", "plus"]


def test_workers_give_the_same_document(noisy, tmp_path):
    (tmp_path / "a").mkdir()
    for k in range(3):
        (tmp_path / "a" / f"b{k}.pt").write_bytes(BUNDLE.read_bytes())
    one = _invoke(tmp_path / "a", "--gt", noisy, "--workers", "1", "--json", "-")
    two = _invoke(tmp_path / "a", "--gt", noisy, "--workers", "2", "--json", "-")
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    a.pop("versions"), b.pop("versions")
    assert a == b and a["checkpoints"] == 3 and a["issues"][0]["checkpoints"] == 3


def test_ctrl_c_returns_what_was_audited(noisy):
    seen = []

    def sink(rec):
        seen.append(rec)
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: finish this bundle, then stop

    stopped = drive([BUNDLE, BUNDLE, BUNDLE], AuditJob(gt=str(noisy)), sink, workers=1)
    assert stopped and len(seen) == 1


# ------------------------------------------------------------------------------------------ bad input


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _refused(res, *fragments):
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.exception)
    assert len(lines) == 1 and lines[0].startswith("yolodbg: error: "), res.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_suggest_never_overwrites_the_input(noisy):
    before = _digest(noisy)
    _refused(_invoke(BUNDLE, "--gt", noisy, "--workers", "1", "--suggest", noisy), "--suggest", "input")
    assert _digest(noisy) == before


def test_json_onto_a_bundle_is_refused():
    before = _digest(BUNDLE)
    _refused(_invoke(BUNDLE, "--gt", COCO, "--json", BUNDLE), "--json")
    assert _digest(BUNDLE) == before


def test_gt_folder_is_refused(tmp_path):
    _refused(_invoke(BUNDLE, "--gt", tmp_path), str(tmp_path), "COCO json")


def test_gt_broken_json_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    _refused(_invoke(BUNDLE, "--gt", bad), "bad.json")


def test_bad_recipe_is_refused():
    _refused(_invoke(BUNDLE, "--gt", COCO, "-r", "nosuchloss"), "nosuchloss")


def test_missing_bundle_is_refused(tmp_path):
    _refused(_invoke(tmp_path / "nope.pt", "--gt", COCO), "nope.pt")


def test_empty_names_file_is_refused(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("\n")
    _refused(_invoke(BUNDLE, "--gt", COCO, "--names", names), "names.txt", "--names")


def test_gt_is_required():
    res = _invoke(BUNDLE)
    assert res.exit_code == 2 and "--gt" in res.stderr


def test_a_file_that_is_not_a_bundle_fails_with_exit_2(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    res = _invoke(junk, "--gt", COCO, "--workers", "1")
    assert res.exit_code == 2 and "junk.pt" in res.stdout and "Traceback" not in res.stderr


def test_ray_without_ray_is_one_line(tmp_path):
    try:
        import ray  # noqa: F401

        pytest.skip("Ray is installed here")
    except ImportError:
        pass
    _refused(_invoke(BUNDLE, "--gt", COCO, "--ray", "local"), "--ray", "pip install")


def test_ray_address_that_is_a_path_is_a_usage_error(tmp_path):
    res = _invoke(BUNDLE, "--gt", COCO, "--ray", tmp_path)
    assert res.exit_code == 2 and "not a Ray address" in res.stderr


def test_readme_example_is_what_audit_prints():
    """The README's audit example (the shipped noisy labels) is the command's output at 80 columns."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ yolodbg audit sample_data/yolov8n_val.pt --gt sample_data/coco_val_noisy.json")[1]
    shown = block.split("```")[0].strip().splitlines()[1:]
    res = _invoke(
        BUNDLE, "--gt", SAMPLE / "coco_val_noisy.json", "--top", "4", "--workers", "1", env={"COLUMNS": "80"}
    )
    lines = res.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Top "))
    got = lines[start : start + len(shown)]
    for want, have in zip(shown, got, strict=True):
        w, h = want.split(), have.split()
        assert len(w) == len(h), (want, have)
        for a, b in zip(w, h, strict=True):
            try:
                assert float(a.strip(",;%()[]")) == pytest.approx(float(b.strip(",;%()[]")), abs=0.002)
            except ValueError:
                assert a == b, (want, have)


def test_ctrl_c_prints_the_partial_report_and_exits_130(noisy, tmp_path, monkeypatch):
    """The command's Ctrl-C path (the scan's drive): the bundles done so far are reported, then exit 130."""
    from yolodbg.audit.merge import AuditAggregate

    for k in range(3):
        (tmp_path / f"b{k}.pt").write_bytes(BUNDLE.read_bytes())
    add = AuditAggregate.add

    def add_then_ctrl_c(self, rec):
        add(self, rec)
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: finish this bundle, then stop

    monkeypatch.setattr(AuditAggregate, "add", add_then_ctrl_c)
    res = _invoke(tmp_path, "--gt", noisy, "--workers", "1", "--json", "-")
    assert res.exit_code == 130, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert doc["interrupted"] and doc["bundles"] == 1 and doc["issues"]
    assert "interrupted: results cover 1 of 3 bundles" in res.stderr
