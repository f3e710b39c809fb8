"""Reports at 80 and 120 columns on the sample data: exact text pinned (``tests/report_widths/``), and
at every width no value is cut (no ``…``) and no line is wider than the terminal.

Through a pipe rich assumes 80 columns, so 80 is what a first run pasted into an issue looks like.
Re-record after an intended change and review the diff::

    python tests/test_report_widths.py --update
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "report_widths"
_spec = importlib.util.spec_from_file_location(
    "cli_output_cases", HERE / "cli_outputs" / "cli_output_cases.py"
)
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)

COCO = ("--gt", "sample_data/coco_val.json")
V8 = "sample_data/yolov8n_val.pt"
REPORTS: dict[str, list[str]] = {
    "compare_recipes": [
        "compare",
        V8,
        *COCO,
        "-r",
        "yolov8",
        "-r",
        "yolov8:box=giou",
        "-r",
        "yolov8:cls=varifocal",
    ],
    "compare_yolox_variants": [
        "compare",
        "sample_data/yolox_val.pt",
        *COCO,
        "-r",
        "yolox",
        "-r",
        "yolox-main",
    ],
    "compare_bundles": ["compare", V8, V8, *COCO, "--top", "5"],
    "scan": ["scan", V8, *COCO, "--workers", "1", "--top", "5"],
    "check_drift": ["check", C.SNAP, "-r", "yolov8:assigner.topk=13", "--top", "5"],
    "trend": ["trend", V8, V8, *COCO, "--workers", "1"],
    "recipes": ["recipes"],
    "recipes_yolov8": ["recipes", "yolov8"],
    "audit": ["audit", V8, "--gt", "sample_data/coco_val_noisy.json", "--workers", "1", "--top", "5"],
}
WIDTHS = (80, 120)
CASES = {f"{name}_{w}": (args, w) for name, args in REPORTS.items() for w in WIDTHS}
CASES["compare_recipes_80_wide"] = ([*REPORTS["compare_recipes"], "--wide"], 80)
CASES["audit_80_wide"] = ([*REPORTS["audit"], "--wide"], 80)


def run(args: list[str], width: int) -> tuple[int, str]:
    """(exit code, stdout) of one command at ``width`` columns, run from the repository root."""
    from click.testing import CliRunner

    from yolodbg.cli import main

    env = {"COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    cwd = os.getcwd()
    os.chdir(C.ROOT)
    try:
        res = CliRunner().invoke(main, args, env=env, prog_name="yolodbg")
    finally:
        os.chdir(cwd)
    return res.exit_code, res.stdout


@pytest.fixture(scope="module")
def outputs() -> dict[str, tuple[int, str]]:
    return {name: run(*case) for name, case in CASES.items()}


def test_every_case_is_recorded():
    assert {p.stem for p in EXPECTED.glob("*.txt")} == set(CASES), (
        "re-record: python tests/test_report_widths.py --update"
    )


@pytest.mark.parametrize("name", list(CASES))
def test_report_text_is_pinned(name, outputs):
    code, text = outputs[name]
    problems = list(
        C.differences((EXPECTED / f"{name}.txt").read_text(encoding="utf-8"), f"exit {code}\n{text}")
    )
    assert not problems, f"{name}: " + "\n".join(problems[:10])


@pytest.mark.parametrize("name", [n for n in CASES if not n.endswith("_wide")])
def test_no_value_is_cut_and_no_line_is_too_wide(name, outputs):
    code, text = outputs[name]
    width = CASES[name][1]
    assert code in (0, 1), text  # check_drift exits 1: it drifted on purpose
    assert text.strip()
    for line in text.splitlines():
        assert "…" not in line, f"{name}: a cut value in {line!r}"
        assert len(line.rstrip()) <= width, f"{name}: {len(line.rstrip())} columns > {width}: {line!r}"


def test_wide_shows_every_column(outputs):
    narrow, wide = outputs["compare_recipes_80"][1], outputs["compare_recipes_80_wide"][1]
    assert "not shown at 80 columns" in narrow and "not shown" not in wide
    assert "w×h px" in wide and "w×h px" not in narrow.split("GTs by change")[1].split("not shown")[0]


def update() -> None:
    EXPECTED.mkdir(exist_ok=True)
    for old in EXPECTED.glob("*.txt"):
        old.unlink()
    for name, case in CASES.items():
        code, text = run(*case)
        (EXPECTED / f"{name}.txt").write_text(f"exit {code}\n{text}", encoding="utf-8")
        print(f"recorded {name}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    update()
