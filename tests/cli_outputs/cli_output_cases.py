"""Every command's output on the shipped sample data, pinned: the cases, how they run, how they compare.

``tests/test_cli_outputs.py`` runs each case in-process (click's runner, 100 columns, no colour,
from the repository root) and compares exit code, stdout and stderr with the recorded text in
``expected/``. A refactoring must leave them unchanged; a change meant to alter a report is
accepted by re-recording and reviewing the diff::

    python tests/cli_outputs/cli_output_cases.py --update

Text must match exactly, numbers within what differs between CPU kernels (see :func:`differences`).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).resolve().parent / "expected"
COLUMNS = 100
COCO = ("--gt", "sample_data/coco_val.json")
SNAP = "tests/snapshots/yolov8n_val.json"

CASES: dict[str, list[str]] = {
    "help": ["--help"],
    "version": ["--version"],
    **{
        f"help_{c}": [c, "--help"]
        for c in (
            "explain",
            "recipes",
            "compare",
            "snapshot",
            "check",
            "scan",
            "trend",
            "capture",
            "validate",
            "audit",
        )
    },
    **{
        f"explain_{b}": ["explain", f"sample_data/{b}.pt", *COCO]
        for b in ("yolov8n_val", "yolo26n_val", "yolox_val", "yolov1_val", "yolov5n_val")
    },
    **{
        f"explain_json_{b}": ["explain", f"sample_data/{b}.pt", *COCO, "--json", "-"]
        for b in ("yolov8n_val", "yolo26n_val", "yolox_val", "yolov1_val", "yolov5n_val")
    },
    "explain_train_step": ["explain", "sample_data/yolov8n_train_step.pt"],
    "explain_json_train_step": ["explain", "sample_data/yolov8n_train_step.pt", "--json", "-"],
    "explain_image": ["explain", "sample_data/yolov8n_val.pt", *COCO, "--image", "1", "--top", "3"],
    "compare_recipes": [
        "compare",
        "sample_data/yolov8n_val.pt",
        *COCO,
        "-r",
        "yolov8",
        "-r",
        "yolov8:box=giou",
        "-r",
        "yolov8:cls=varifocal,assigner.topk=13",
    ],
    "compare_json_recipes": [
        "compare",
        "sample_data/yolov8n_val.pt",
        *COCO,
        "-r",
        "yolov8",
        "-r",
        "yolov8:box=giou",
        "--json",
        "-",
    ],
    "compare_bundles": ["compare", "sample_data/yolov8n_val.pt", "sample_data/yolov8n_val.pt", *COCO],
    "scan_json": [
        "scan",
        "sample_data/yolov8n_val.pt",
        "sample_data/yolox_val.pt",
        *COCO,
        "--no-map",
        "--json",
        "-",
        "--workers",
        "1",
    ],
    "scan": ["scan", "sample_data/yolov8n_val.pt", *COCO, "--workers", "1"],
    "recipes": ["recipes"],
    "recipes_yolov8": ["recipes", "yolov8"],
    "check": ["check", SNAP],
    "check_json": ["check", SNAP, "--json", "-"],
    "validate": ["validate", SNAP],
    # refusals: exit code and the one line
    "error_recipes_unknown": ["recipes", "nope"],
    "error_snapshot_exists": ["snapshot", "sample_data/yolov8n_val.pt", *COCO, "-o", SNAP],
    "error_missing_bundle": ["explain", "missing.pt"],
    "error_imgsz": ["explain", "sample_data/yolov8n_val.pt", *COCO, "--imgsz", "640"],
    "error_strides": ["explain", "sample_data/yolov8n_val.pt", "--strides", "nan"],
    "error_head": ["explain", "sample_data/yolov8n_val.pt", "--head", "bogus"],
    "error_recipe": ["explain", "sample_data/yolov8n_val.pt", "-r", "bogus"],
    "error_variant": ["explain", "sample_data/yolov8n_val.pt", *COCO, "-r", "yolov8:gain.box=nan"],
    "error_image": ["explain", "sample_data/yolov8n_val.pt", *COCO, "--image", "999999"],
    "error_image_ids": ["explain", "sample_data/yolov8n_val.pt", *COCO, "--image-ids", "5,6,7,8"],
    "error_compare_one": ["compare", "sample_data/yolov8n_val.pt", "-r", "yolov8"],
    "error_check_rtol": ["check", SNAP, "--rtol", "nan"],
    "error_unknown_command": ["nosuch"],
}

# one number as printed: optional sign, digits with an optional fraction, optional exponent
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_TORCH_VERSION = re.compile(r'("torch": )"[^"]*"')
REL_TOL = 1e-5  # what the golden tests allow between CPU kernels for terms
# differences of nearly equal numbers (replay vs logged, recipe A vs B, per GT) carry the absolute
# error of the numbers they subtract: losses of order 0.1 to 10 at rel 1e-5 leave up to ~1e-6 there
ABS_TOL = 1e-6


def run(args: list[str]) -> str:
    """One case as text: the exit code, then stdout and stderr (run from the repository root)."""
    import os

    from click.testing import CliRunner

    from yolodbg.cli import main

    env = {"COLUMNS": str(COLUMNS), "NO_COLOR": "1", "TERM": "dumb"}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        res = CliRunner().invoke(main, args, env=env, prog_name="yolodbg")
    finally:
        os.chdir(cwd)
    text = f"exit {res.exit_code}\n--- stdout\n{res.stdout}--- stderr\n{res.stderr}"
    return _TORCH_VERSION.sub(r'\1"<torch>"', text)


def _place(token: str) -> float:
    """One unit in the last printed place of ``token`` (0.6556 -> 1e-4, 8.5e-07 -> 1e-9, 12 -> 0)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    if "." not in mantissa and not exponent:
        return 0.0  # an integer (a count, an id): exact
    return 10.0 ** (int(exponent or 0) - decimals)


def differences(expected: str, actual: str) -> Iterator[str]:
    """Where ``actual`` differs from ``expected``: text exactly, numbers beyond the kernels' rounding.

    A number may differ by one unit in its last printed place (a last-bit change can flip the
    rounding of a printed digit), by ``REL_TOL`` relative or by ``ABS_TOL``; integers (counts,
    ids, indices) must be equal. Anything else is reported with its line.
    """
    exp_lines, act_lines = expected.splitlines(), actual.splitlines()
    if len(exp_lines) != len(act_lines):
        yield f"{len(act_lines)} lines, expected {len(exp_lines)}"
    for n, (e, a) in enumerate(zip(exp_lines, act_lines, strict=False), 1):
        if e == a:
            continue
        e_nums, a_nums = _NUMBER.findall(e), _NUMBER.findall(a)
        if _NUMBER.sub("#", e) != _NUMBER.sub("#", a) or len(e_nums) != len(a_nums):
            yield f"line {n}: expected {e!r}, got {a!r}"
            continue
        for x, y in zip(e_nums, a_nums, strict=True):
            fx, fy = float(x), float(y)
            allowed = max(_place(x), _place(y)) * 1.000001 + REL_TOL * abs(fx) + ABS_TOL
            if _place(x) == 0 and _place(y) == 0:
                allowed = 0.0
            if not (math.isclose(fx, fy, rel_tol=0, abs_tol=allowed)):
                yield f"line {n}: {x} became {y}: expected {e!r}, got {a!r}"
                break


def update() -> None:
    EXPECTED.mkdir(exist_ok=True)
    for old in EXPECTED.glob("*.txt"):
        old.unlink()
    for name, args in CASES.items():
        (EXPECTED / f"{name}.txt").write_text(run(args), encoding="utf-8")
        print(f"recorded {name}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    update()
