"""Commands that compute nothing answer without importing torch (``benchmarks/bench_startup.py`` times them).

The cases run one after the other in one fresh interpreter, which reports after each its exit code
and whether torch (or pycocotools) is imported so far: the recipe catalogue (``recipes``,
``recipes NAME``, a bad name or variant), ``--help`` of the group and of every command,
``--version``, usage errors that click detects (no argument, an unknown option or ``--head``) and
malformed bundle options (``--imgsz``, ``--strides``), which are refused before the command reads
any input. Deterministic, not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = (
    "explain", "compare", "scan", "snapshot", "check", "trend", "capture", "validate", "recipes", "audit"
)  # fmt: skip

CASES = {
    "recipes": (["recipes"], 0),
    "recipes NAME": (["recipes", "yolov8"], 0),
    "recipes ALIAS": (["recipes", "yolo11"], 0),
    "recipes yolox-main": (["recipes", "yolox-main"], 0),
    "recipes VARIANT": (["recipes", "yolov5:balance=4/1/0.4,box=giou"], 0),
    "unknown recipe": (["recipes", "yolov9"], 2),
    "bad variant value": (["recipes", "yolov8:assigner.topk=0"], 2),
    "bad variant key": (["recipes", "yolov8:topk=3"], 2),
    "bad variant combination": (["recipes", "yolov8:cls.gamma=1.5"], 2),
    "bad yolov5 balance": (["recipes", "yolov5:balance=a/b"], 2),
    "--help": (["--help"], 0),
    "recipes --help": (["recipes", "--help"], 0),
    "--version": (["--version"], 0),
    "no command": ([], 2),  # click shows the usage
    "unknown command": (["explian"], 2),
    "unknown option": (["explain", "--bogus"], 2),
    "missing argument": (["explain"], 2),
    "bad option value": (["scan", "x", "--top", "many"], 2),
    "unknown group option": (["--bogus"], 2),
    # every subcommand's help: the --head choices come from the head-family declarations (no torch)
    **{f"{c} --help": ([c, "--help"], 0) for c in COMMANDS},
    # usage errors of every subcommand: no argument, an unknown option
    **{f"{c} (no argument)": ([c], 2) for c in COMMANDS if c != "recipes"},
    **{f"{c} --bogus": ([c, "--bogus"], 2) for c in COMMANDS},
    # the bundle options, refused before the command reads any input
    "unknown --head": (["explain", "x.pt", "--head", "yolov9"], 2),
    "unknown --head (compare)": (["compare", "x.pt", "--head", "nope"], 2),
    "unknown --head (scan)": (["scan", "x", "--head", "nope"], 2),
    "bad --imgsz": (["explain", "x.pt", "--imgsz", "abc"], 2),
    "bad --imgsz (three sizes)": (["snapshot", "x.pt", "-o", "s.json", "--imgsz", "1,2,3"], 2),
    "bad --imgsz (scan)": (["scan", "x", "--imgsz", "640.5"], 2),
    "bad --imgsz (check)": (["check", "s.json", "--imgsz", "0"], 2),
    "bad --strides": (["compare", "x.pt", "--strides", "8,nan"], 2),
    "bad --strides (trend)": (["trend", "x", "--strides", "-8"], 2),
    "bad --nc": (["explain", "x.pt", "--nc", "0"], 2),
    "bad --letterbox": (["explain", "x.pt", "--letterbox", "darknet"], 2),
    "audit without --gt": (["audit", "x.pt"], 2),
    "bad --ray (audit)": (
        ["audit", "x.pt", "--gt", str(ROOT / "sample_data" / "coco_val.json"), "--ray", "a/b"],
        2,
    ),
    "bad --imgsz (audit)": (
        ["audit", "x.pt", "--gt", str(ROOT / "sample_data" / "coco_val.json"), "--imgsz", "abc"],
        2,
    ),
}

PROBE = """
import contextlib, io, json, sys
from yolodbg.cli import main
results = []
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(args, prog_name="yolodbg")
            code = 0
        except SystemExit as e:
            code = e.code or 0
    # a module stays imported: the first command that imports torch is the one named
    results.append({"exit": code, "heavy": sorted(m for m in ("torch", "pycocotools") if m in sys.modules)})
print(json.dumps(results))
"""


def _probe(*commands: list[str]) -> list[dict]:
    """Run the commands one after the other in one fresh interpreter; per command its exit code and
    the heavy modules imported so far."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's yolodbg
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probed() -> dict[str, dict]:
    return dict(zip(CASES, _probe(*(args for args, _ in CASES.values())), strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_command_answers_without_torch(case, probed):
    args, exit_code = CASES[case]
    assert probed[case] == {"exit": exit_code, "heavy": []}, f"yolodbg {' '.join(args)}: {probed[case]}"


def test_the_probe_sees_torch_when_a_command_needs_it():
    """The probe is not blind: a replay imports torch, and the probe says so."""
    sample = ROOT / "sample_data"
    explain = [
        "explain",
        str(sample / "yolov8n_val.pt"),
        "--gt",
        str(sample / "coco_val.json"),
        "--json",
        "-",
    ]
    listing, replay = _probe(["recipes"], explain)
    assert listing == {"exit": 0, "heavy": []}
    assert replay["exit"] == 0 and "torch" in replay["heavy"]


def test_importing_the_recipe_catalogue_imports_no_torch():
    code = (
        "import sys; from yolodbg.recipes import RECIPES, get_recipe\n"
        "names = [get_recipe(n).spec() for n in RECIPES]\n"
        "print(names, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().endswith("False"), out.stdout


def test_the_head_family_declarations_import_no_torch_until_a_hook_runs():
    """``yolodbg.heads`` is the declarations: names, default recipes, letterboxes and post-processing
    read without torch; the first hook that reads a tensor imports the family's module."""
    code = (
        "import json, sys\n"
        "from yolodbg import heads\n"
        "f = heads.family('ultralytics')\n"
        "decl = [heads.names(), f.default_recipe, f.recipe_name({'one2one': {}}), f.letterbox, f.postprocess.iou]\n"
        "before = sorted(m for m in ('torch', 'pycocotools', 'yolodbg.heads.ultralytics') if m in sys.modules)\n"
        "import torch\n"
        "claims = heads.recognise({'boxes': torch.zeros(1, 64, 8), 'scores': torch.zeros(1, 2, 8)})\n"
        "after = 'yolodbg.heads.ultralytics' in sys.modules\n"
        "print(json.dumps([decl, before, [n for n, _ in claims], after]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    decl, before, claimed, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert decl == [["ultralytics", "yolov5", "yolox", "yolov1"], "yolov8", "yolo26", "ultralytics", 0.7]
    assert before == []
    assert claimed == ["ultralytics"] and after is True
