"""The JSON contract shipped with yolodbg: schemas, the arithmetic checks and ``yolodbg validate``.

Every kind of document the commands write is produced here from ``sample_data/`` and must pass;
then single mutations of a valid document (a term dropped from one GT, a broken sum, a wrong
id, a missing field, NaN) must each be caught with a message that names the field.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from yolodbg.cli import main
from yolodbg.validate import SCHEMA_FILES, UnknownSchema, load_schema, validate, validate_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ["yolov8n_val", "yolo26n_val", "yolov5n_val", "yolox_val", "yolov1_val"]
GT = ["--gt", "sample_data/coco_val.json"]


def _run(*args: str) -> CliRunner:
    res = CliRunner().invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> dict[str, dict]:
    """One document of every kind, written by the CLI on the sample data (cwd = repository root)."""
    out = tmp_path_factory.mktemp("docs")
    cwd = Path.cwd()
    import os

    os.chdir(ROOT)
    try:
        for name in SAMPLES:
            _run("explain", f"sample_data/{name}.pt", *GT, "--json", str(out / f"explain_{name}.json"))
        _run("explain", "sample_data/yolov8n_train_step.pt", "--json", str(out / "explain_step.json"))
        v8 = "sample_data/yolov8n_val.pt"
        _run(
            "compare", v8, *GT, "-r", "yolov8", "-r", "yolov8:box=giou", "--json", str(out / "compare_r.json")
        )
        _run("compare", v8, "sample_data/yolov8n_val.pt", *GT, "--json", str(out / "compare_b.json"))
        _run("scan", v8, *GT, "--workers", "1", "--json", str(out / "scan.json"))
        _run("trend", v8, v8, *GT, "--workers", "1", "--json", str(out / "trend.json"))
        _run("snapshot", v8, *GT, "-r", "yolov8", "-r", "yolov8:box=giou", "-o", str(out / "snapshot.json"))
        _run("check", str(out / "snapshot.json"), "--json", str(out / "check.json"))
    finally:
        os.chdir(cwd)
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_every_schema_is_valid_json_schema_2020_12():
    assert SCHEMA_FILES, "no schema shipped"
    for sid, file in SCHEMA_FILES.items():
        schema = load_schema(sid)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["schema"] == {"const": sid}, file


def test_every_document_kind_yolodbg_writes_has_a_schema():
    import importlib
    import pkgutil

    import yolodbg.documents

    kinds = [m.name for m in pkgutil.iter_modules(yolodbg.documents.__path__) if m.name != "common"]
    written = {importlib.import_module(f"yolodbg.documents.{k}").SCHEMA for k in kinds}
    assert len(written) == len(kinds) == 7
    assert written == set(SCHEMA_FILES)


@pytest.mark.parametrize(
    "kind",
    [
        *(f"explain_{n}" for n in SAMPLES),
        "explain_step",
        "compare_r",
        "compare_b",
        "scan",
        "trend",
        "snapshot",
        "check",
    ],
)
def test_sample_outputs_hold_to_their_schema(docs, kind):
    doc = docs[kind]
    expect = "yolodbg." + kind.split("_")[0] + "/1"
    assert validate(doc, expect) == [], kind


def test_committed_snapshots_hold_to_their_schema():
    paths = sorted((ROOT / "tests" / "snapshots").glob("*.json"))
    assert paths, "no committed snapshot"
    for path in paths:
        assert validate_file(path, "yolodbg.snapshot/1") == ("yolodbg.snapshot/1", []), path.name


# ------------------------------------------------------------------------------ broken documents


def _broken(doc: dict, mutate) -> list[str]:
    bad = copy.deepcopy(doc)
    mutate(bad)
    return validate(bad)


def _one(problems: list[str], *needles: str) -> None:
    assert problems, "the broken document passed"
    assert any(all(n in p for n in needles) for p in problems), problems


def test_term_missing_from_one_gt_is_named(docs):
    doc = docs["explain_yolov8n_val"]
    _one(_broken(doc, lambda d: d["gts"][3]["terms"].pop("cls")), "gts[3].terms", "'cls'", "missing")


def test_term_missing_from_background_is_named(docs):
    doc = docs["explain_yolov8n_val"]
    _one(_broken(doc, lambda d: d["background"]["terms"].pop("dfl")), "background.terms", "'dfl'")


def test_broken_conservation_is_named_with_both_sides(docs):
    def shift(d):
        d["gts"][0]["terms"]["box"] += 1e-3

    problems = _broken(docs["explain_yolov5n_val"], shift)
    _one(problems, "terms.box", "conservation", "Σ gts + background")


def test_broken_conservation_of_an_extra_term_is_named(docs):
    doc = docs["explain_yolo26n_val"]
    assert doc["extra_terms"]

    def shift(d):
        d["background"]["terms"]["o2m.cls"] *= 1.5

    _one(_broken(doc, shift), "extra_terms.o2m.cls", "conservation")


def test_conservation_within_float32_rounding_passes(docs):
    def nudge(d):
        d["gts"][0]["terms"]["iou"] *= 1 + 1e-7

    assert _broken(docs["explain_yolox_val"], nudge) == []


def test_total_that_is_not_the_sum_of_terms_is_named(docs):
    _one(_broken(docs["explain_yolov1_val"], lambda d: d.update(total=d["total"] * 2)), "total", "adds up to")


def test_missing_required_field_is_named(docs):
    _one(_broken(docs["explain_step"], lambda d: d.pop("batch_size")), "batch_size", "required")
    _one(_broken(docs["explain_step"], lambda d: d["gts"][1].pop("box_xyxy")), "gts[1].box_xyxy", "required")
    _one(_broken(docs["scan"], lambda d: d.pop("loss_sum")), "loss_sum", "required")


def test_wrong_types_and_shapes_are_named(docs):
    doc = docs["explain_yolov8n_val"]
    _one(_broken(doc, lambda d: d["terms"].update(box="0.5")), "terms.box", "number")
    _one(_broken(doc, lambda d: d["gts"][2].update(box_xyxy=[1, 2, 3])), "gts[2].box_xyxy", "short")
    _one(_broken(doc, lambda d: d["gts"][0].update(reason={"detail": "x"})), "gts[0].reason.code", "required")
    _one(_broken(doc, lambda d: d.update(batch_size=0)), "batch_size")


def test_term_names_must_follow_the_pattern(docs):
    doc = docs["explain_yolov8n_val"]
    _one(_broken(doc, lambda d: d["terms"].update({"Box Loss": 0.0})), "terms", "Box Loss")


def test_non_finite_numbers_are_named(docs):
    doc = docs["explain_yolox_val"]
    _one(_broken(doc, lambda d: d.update(objective=math.nan)), "objective", "finite")
    _one(_broken(doc, lambda d: d["gts"][4].update(total=math.inf)), "gts[4].total", "finite")


def test_a_recorded_non_finite_loss_is_a_problem(docs):
    def nonfinite(d):
        d["terms"]["cls"] = None
        d["nonfinite"] = {"message": "scores[0, 12, 3] is NaN", "term": "cls"}

    problems = _broken(docs["explain_yolov8n_val"], nonfinite)
    _one(problems, "terms.cls")
    _one(problems, "nonfinite", "NaN")


def test_counts_and_shares_must_agree(docs):
    doc = docs["explain_yolov8n_val"]
    _one(_broken(doc, lambda d: d.update(num_gt=d["num_gt"] + 1)), "num_gt", "gts[]")
    _one(_broken(doc, lambda d: d["gts"][0].update(share=1.5)), "gts[0].share", "[0, 1]")
    _one(_broken(doc, lambda d: d["gts"][0].update(image_index=99)), "gts[0].image_index", "batch_size")


def test_unknown_or_missing_schema_id_is_refused():
    with pytest.raises(UnknownSchema, match=r"unknown schema 'yolodbg\.explain/9'"):
        validate({"schema": "yolodbg.explain/9"})
    with pytest.raises(UnknownSchema, match="no 'schema' field"):
        validate({"terms": {}})
    with pytest.raises(UnknownSchema, match="not a JSON object"):
        validate([1, 2])


def test_expected_kind_mismatch_is_a_problem(docs):
    assert validate(docs["scan"], "yolodbg.explain/1") == [
        "schema: is 'yolodbg.scan/1', expected 'yolodbg.explain/1'"
    ]


def test_scan_conservation_is_checked(docs):
    def shift(d):
        d["classes"][0]["terms"]["cls"] += 0.01

    _one(_broken(docs["scan"], shift), "loss_sum.terms.cls", "classes[]", "conservation")


def test_compare_columns_must_line_up(docs):
    _one(_broken(docs["compare_r"], lambda d: d["deltas"].pop()), "deltas", "columns")
    _one(_broken(docs["compare_r"], lambda d: d["gts"][0]["total"].pop()), "gts[0].total", "columns")


def test_snapshot_with_emptied_terms_or_a_gt_without_a_term_is_caught(docs):
    _one(_broken(docs["snapshot"], lambda d: d["recipes"][0]["terms"].clear()), "recipes[0].terms")
    _one(
        _broken(docs["snapshot"], lambda d: d["recipes"][1]["gts"][2]["terms"].pop("dfl")),
        "recipes[1].gts[2].terms",
    )


def test_check_report_ok_must_match_its_lists(docs):
    _one(_broken(docs["check"], lambda d: d["structure"].append("recipe x is new")), "ok", "drift")


def test_trend_series_have_one_value_per_checkpoint(docs):
    _one(_broken(docs["trend"], lambda d: d["series"]["total"]["values"].pop()), "series.total.values")


# ------------------------------------------------------------------------------ the command


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "yolodbg", "validate", *args], input=stdin, capture_output=True, text=True
    )


def test_cli_exit_0_for_valid_documents(docs, tmp_path):
    paths = []
    for kind in ("explain_yolov8n_val", "scan", "snapshot"):
        p = tmp_path / f"{kind}.json"
        p.write_text(json.dumps(docs[kind]))
        paths.append(str(p))
    proc = _cli(*paths)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{paths[0]}: ok (yolodbg.explain/1)",
        f"{paths[1]}: ok (yolodbg.scan/1)",
        f"{paths[2]}: ok (yolodbg.snapshot/1)",
    ]
    proc = _cli("-", stdin=json.dumps(docs["check"]))
    assert proc.returncode == 0 and proc.stdout == "<stdin>: ok (yolodbg.check/1)\n"


def test_cli_exit_1_lists_each_problem_with_file_and_field(docs, tmp_path):
    doc = copy.deepcopy(docs["explain_yolov8n_val"])
    del doc["gts"][3]["terms"]["cls"]
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text(json.dumps(doc))
    good.write_text(json.dumps(docs["explain_yolox_val"]))
    proc = _cli(str(bad), str(good))
    assert proc.returncode == 1 and proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert f"{bad}: gts[3].terms: term 'cls' is missing" in lines[0]
    assert lines[-1] == f"{good}: ok (yolodbg.explain/1)"
    proc = _cli("--expect", "yolodbg.scan/1", str(good))
    assert proc.returncode == 1 and "expected 'yolodbg.scan/1'" in proc.stdout


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"schema": "yolodbg.explain/1", "terms": ', "not JSON (line 1"),
        ('{"schema": "yolodbg.frobnicate/1"}', "unknown schema 'yolodbg.frobnicate/1'"),
        ('{"terms": {}}', "no 'schema' field"),
        ("[1, 2, 3]", "not a JSON object"),
        ("[" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_cli_exit_2_for_unreadable_or_unknown_documents(tmp_path, content, needle):
    path = tmp_path / "doc.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = path.read_bytes()
    proc = _cli(str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"yolodbg: error: {path}: ") and needle in lines[0]
    assert "Traceback" not in proc.stderr and path.read_bytes() == before


def test_cli_exit_2_for_paths_that_are_not_json_files(tmp_path, docs):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(docs["trend"]))
    for path, needle in ((tmp_path / "missing.json", "cannot read"), (tmp_path, "is a folder")):
        proc = _cli(str(path), str(good))
        assert proc.returncode == 2  # the worst outcome wins, every file is still reported
        assert proc.stderr.count("\n") == 1 and needle in proc.stderr and str(path) in proc.stderr
        assert proc.stdout == f"{good}: ok (yolodbg.trend/1)\n"


def test_cli_refuses_an_unknown_expect():
    proc = _cli("--expect", "yolodbg.nope/1", "x.json")
    assert proc.returncode == 2 and "--expect" in proc.stderr


def test_structure_and_arithmetic_problems_are_reported_together(docs):
    def edit(d):
        d["versions"].pop("torch")
        d["gts"][3]["terms"].pop("cls")

    problems = _broken(docs["explain_yolov8n_val"], edit)
    _one(problems, "versions.torch", "required")
    _one(problems, "gts[3].terms", "'cls'")


# ------------------------------------------------------------------------------ a repository that stands alone

TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".yaml", ".yml", ".json", ".jsonl"}


def _repository_text_files() -> list[Path]:
    roots = [ROOT / d for d in ("yolodbg", "tests", "docs", "benchmarks", "sample_data")]
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for root in roots:
        files += [p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    return [p for p in files if "__pycache__" not in p.parts]


def test_the_repository_cites_nothing_outside_itself():
    """README, docs, code and tests are readable from a lone clone: no pointers to a sibling folder."""
    needles = [
        "../" + "shared",
        "DESIGN" + ".md",
        "DESIGN" + " §",
        "LOSSES" + ".md",
        "check_explain" + "_json",
    ]
    hits = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in _repository_text_files()
        for n in needles
        if n in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert hits == []


def test_relative_links_in_the_docs_resolve():
    import re

    broken = []
    for md in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", md.read_text(encoding="utf-8")):
            if "://" not in target and not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_validate_accepts_what_explain_accepts():
    """The same conservation tolerance as explain's own check: a report explain passed must validate."""
    from yolodbg import breakdown
    from yolodbg import validate as v

    assert (v.RTOL, v.ATOL) == (breakdown.CONSERVATION_RTOL, breakdown.CONSERVATION_ATOL)


KIND_OF = {
    "explain_yolov8n_val": "yolodbg.explain/1",
    "compare_r": "yolodbg.compare/1",
    "scan": "yolodbg.scan/1",
    "trend": "yolodbg.trend/1",
    "snapshot": "yolodbg.snapshot/1",
    "check": "yolodbg.check/1",
}


@pytest.mark.parametrize("kind", sorted(KIND_OF))
def test_every_required_top_level_field_is_named_when_missing(docs, kind):
    required = [f for f in load_schema(KIND_OF[kind])["required"] if f != "schema"]
    assert required
    for field in required:
        problems = _broken(docs[kind], lambda d, f=field: d.pop(f))
        assert f"{field}: required field is missing" in problems, (field, problems)


def test_every_required_gt_field_is_named_when_missing(docs):
    gt_schema = load_schema("yolodbg.explain/1")["$defs"]["gt"]
    assert gt_schema["required"], "the gt schema requires no field"
    for field in gt_schema["required"]:
        problems = _broken(docs["explain_yolox_val"], lambda d, f=field: d["gts"][5].pop(f))
        assert f"gts[5].{field}: required field is missing" in problems, (field, problems)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_moved_share_of_any_term_breaks_conservation(docs, data):
    """Move a part of any term from the background (or a GT) to nowhere: always caught, naming the term."""
    name = data.draw(st.sampled_from([f"explain_{n}" for n in SAMPLES]))
    doc = docs[name]
    term = data.draw(st.sampled_from(sorted(doc["terms"])))
    owner = data.draw(st.integers(-1, len(doc["gts"]) - 1))  # -1 = background
    tol = 1e-6 + 1e-5 * abs(doc["terms"][term])
    delta = data.draw(st.floats(3 * tol, 10.0)) * data.draw(st.sampled_from([-1, 1]))

    def move(d):
        where = d["background"] if owner < 0 else d["gts"][owner]
        where["terms"][term] += delta

    _one(_broken(doc, move), f"terms.{term}", "conservation")


def test_cli_refuses_devices_and_fifos_without_reading_them(tmp_path):
    import os

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        proc = subprocess.run(
            [sys.executable, "-m", "yolodbg", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2 and "not a regular file" in proc.stderr and proc.stderr.count("\n") == 1
